// Snapshot parity across ranks: every rank's parity equals ErasureCode::encode of the whole group's data computed
// in one place (every rank regenerates every shard from its seed), and every pattern of at most m lost ranks
// (their shard and the parity they held wiped) is rebuilt to the original bytes; a pattern one group cannot survive
// is refused on every rank. Groups: k = world / 2 (so there are two), m = min(2, k); the ranks' nodes simulated as
// two halves of the world, and all on one node.
#include <gtest/gtest.h>
#include <mpi.h>

#include <random>

#include "checkpoint/erasure_code.h"
#include "checkpoint/snapshot_layout.h"
#include "checkpoint/snapshot_parity.h"

namespace memtrain::checkpoint {
namespace {

constexpr int64_t kLen = 100003;

std::vector<uint8_t> shard_of(int rank) {
  std::mt19937 rng(1000 + rank);
  std::vector<uint8_t> s(kLen);
  for (auto& b : s) b = static_cast<uint8_t>(rng());
  return s;
}

// The parity shard (g, j) from all of group g's data, in one place.
std::vector<uint8_t> reference_parity(const SnapshotLayout& layout, int g, int j) {
  const auto& members = layout.groups()[g].members;
  const int k = static_cast<int>(members.size()), m = layout.m();
  std::vector<std::vector<uint8_t>> data;
  std::vector<const uint8_t*> in;
  for (int r : members) data.push_back(shard_of(r));
  for (auto& d : data) in.push_back(d.data());
  std::vector<std::vector<uint8_t>> parity(m, std::vector<uint8_t>(kLen));
  std::vector<uint8_t*> out;
  for (auto& p : parity) out.push_back(p.data());
  ErasureCode::create(k, m)->encode(kLen, in.data(), out.data());
  return parity[j];
}

class MpiSnapshotParity : public ::testing::TestWithParam<bool> {};  // two simulated nodes or one

TEST_P(MpiSnapshotParity, EncodesAsOneProcessAndRebuildsEveryPatternOfMLosses) {
  int rank = 0, world = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const int k = std::max(1, world / 2), m = std::min(2, k);
  std::vector<int> nodes(world);
  for (int r = 0; r < world; ++r) nodes[r] = GetParam() ? r * 2 / world : 0;
  auto layout = SnapshotLayout::plan(nodes, k, m);
  ASSERT_TRUE(layout.ok()) << layout.status();
  const std::vector<uint8_t> mine = shard_of(rank);
  const auto& held = layout->parity_held_by(rank);
  std::vector<std::vector<uint8_t>> parity(held.size(), std::vector<uint8_t>(kLen, 0xEE));  // any old bytes
  std::vector<uint8_t*> into;
  for (auto& p : parity) into.push_back(p.data());
  std::vector<uint8_t> scratch;
  auto sent = encode_parity(MPI_COMM_WORLD, *layout, mine.data(), kLen, into.data(), scratch);
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, m * kLen);
  for (size_t h = 0; h < held.size(); ++h)
    EXPECT_TRUE(parity[h] == reference_parity(*layout, held[h].first, held[h].second)) << "parity " << h;

  int rebuilt = 0, refused = 0;
  for (unsigned mask = 1; mask < (1u << world); ++mask) {
    const int count = __builtin_popcount(mask);
    if (count > m + 1) continue;
    std::vector<bool> lost(world);
    for (int r = 0; r < world; ++r) lost[r] = mask & (1u << r);
    std::vector<uint8_t> shard = mine;
    std::vector<std::vector<uint8_t>> p = parity;
    if (lost[rank]) {  // what a restarted rank has: nothing
      std::fill(shard.begin(), shard.end(), 0xA5);
      p.clear();
    }
    auto r = rebuild_lost(MPI_COMM_WORLD, *layout, lost, shard.data(), kLen, p);
    // EXPECT, not ASSERT, in here: a rank that left the loop early would leave the others waiting.
    if (!layout->tolerates(lost)) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << "mask " << mask;
      EXPECT_EQ(count, m + 1);
      ++refused;
      continue;
    }
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(shard == mine) << "mask " << mask << ": data shard";
    EXPECT_TRUE(p == parity) << "mask " << mask << ": parity";
    ++rebuilt;
  }
  EXPECT_GT(rebuilt, 0);
  if (world > 2) EXPECT_GT(refused, 0);
}

INSTANTIATE_TEST_SUITE_P(Nodes, MpiSnapshotParity, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? std::string("two_nodes") : std::string("one_node"); });

}  // namespace
}  // namespace memtrain::checkpoint
