// SnapshotLayout: every rank in one group, parity outside its group, and, by brute force over the losses, any m
// ranks lost (and, where the node count allows, any whole node) leave every group rebuildable; m + 1 ranks can
// break one.
#include "checkpoint/snapshot_layout.h"

#include <gtest/gtest.h>

#include <set>

namespace memtrain::checkpoint {
namespace {

std::vector<int> nodes_of(int world, int per_node) {
  std::vector<int> n(world);
  for (int r = 0; r < world; ++r) n[r] = r / per_node;
  return n;
}

void expect_well_formed(const SnapshotLayout& layout, int world, int m) {
  std::set<int> seen;
  for (size_t g = 0; g < layout.groups().size(); ++g) {
    const auto& group = layout.groups()[g];
    ASSERT_EQ(static_cast<int>(group.parity_holders.size()), m);
    for (size_t i = 0; i < group.members.size(); ++i) {
      EXPECT_TRUE(seen.insert(group.members[i]).second) << "rank " << group.members[i] << " in two groups";
      EXPECT_EQ(layout.group_of(group.members[i]), static_cast<int>(g));
      EXPECT_EQ(layout.index_in_group(group.members[i]), static_cast<int>(i));
    }
    for (int h : group.parity_holders) EXPECT_NE(layout.group_of(h), static_cast<int>(g)) << "parity inside";
  }
  EXPECT_EQ(static_cast<int>(seen.size()), world);
}

// Whether every set of `count` lost ranks is tolerated.
bool every_loss_of(const SnapshotLayout& layout, int world, int count) {
  for (unsigned mask = 0; mask < (1u << world); ++mask) {
    if (__builtin_popcount(mask) != count) continue;
    std::vector<bool> lost(world);
    for (int r = 0; r < world; ++r) lost[r] = mask & (1u << r);
    if (!layout.tolerates(lost)) return false;
  }
  return true;
}

bool every_node_loss(const SnapshotLayout& layout, const std::vector<int>& node_of_rank) {
  const int nodes = *std::max_element(node_of_rank.begin(), node_of_rank.end()) + 1;
  for (int n = 0; n < nodes; ++n) {
    std::vector<bool> lost(node_of_rank.size());
    for (size_t r = 0; r < lost.size(); ++r) lost[r] = node_of_rank[r] == n;
    if (!layout.tolerates(lost)) return false;
  }
  return true;
}

TEST(SnapshotLayout, AnyMRanksMayBeLost) {
  for (const auto [world, per_node, k, m] : {std::tuple{8, 8, 4, 2}, std::tuple{8, 4, 4, 2}, std::tuple{6, 6, 4, 2},
                                             std::tuple{12, 3, 3, 1}, std::tuple{10, 5, 4, 3}}) {
    auto layout = SnapshotLayout::plan(nodes_of(world, per_node), k, m);
    ASSERT_TRUE(layout.ok()) << layout.status();
    expect_well_formed(*layout, world, m);
    EXPECT_TRUE(every_loss_of(*layout, world, m)) << world << " ranks, k " << k << ", m " << m;
    EXPECT_FALSE(every_loss_of(*layout, world, m + 1)) << world << " ranks, k " << k << ", m " << m;
  }
}

TEST(SnapshotLayout, AWholeNodeMayBeLostWhereTheNodeCountAllows) {
  // Two nodes of four, groups of two: one member per node and one parity shard on each.
  auto two = SnapshotLayout::plan(nodes_of(8, 4), 2, 2);
  ASSERT_TRUE(two.ok());
  EXPECT_TRUE(every_node_loss(*two, nodes_of(8, 4)));
  // Groups of four there put six shards on two nodes: a node holds three, more than m = 2, and tolerates says so.
  auto wide = SnapshotLayout::plan(nodes_of(8, 4), 4, 2);
  ASSERT_TRUE(wide.ok());
  EXPECT_FALSE(every_node_loss(*wide, nodes_of(8, 4)));
  // Four nodes of three, groups of three on three nodes, the parity on the fourth.
  auto four = SnapshotLayout::plan(nodes_of(12, 3), 3, 1);
  ASSERT_TRUE(four.ok());
  EXPECT_TRUE(every_node_loss(*four, nodes_of(12, 3)));
  for (const auto& g : four->groups()) {
    std::set<int> nodes;
    for (int r : g.members) nodes.insert(r / 3);
    for (int r : g.parity_holders) nodes.insert(r / 3);
    EXPECT_EQ(nodes.size(), 4u);
  }
  // Ranks numbered across nodes in any order give the same protection.
  std::vector<int> interleaved(12);
  for (int r = 0; r < 12; ++r) interleaved[r] = r % 4;
  auto mixed = SnapshotLayout::plan(interleaved, 3, 1);
  ASSERT_TRUE(mixed.ok());
  EXPECT_TRUE(every_node_loss(*mixed, interleaved));
}

TEST(SnapshotLayout, ParityNeedsASecondGroup) {
  const auto st = SnapshotLayout::plan(nodes_of(4, 4), 4, 1).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("k must be smaller than 4"), std::string::npos) << st;
  EXPECT_TRUE(SnapshotLayout::plan(nodes_of(4, 4), 4, 0).ok());  // no parity: one group is fine
  EXPECT_TRUE(SnapshotLayout::plan(nodes_of(1, 1), 1, 0).ok());
}

}  // namespace
}  // namespace memtrain::checkpoint
