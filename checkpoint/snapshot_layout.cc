#include "checkpoint/snapshot_layout.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"

namespace memtrain::checkpoint {

absl::StatusOr<SnapshotLayout> SnapshotLayout::plan(const std::vector<int>& node_of_rank, int k, int m) {
  const int world = static_cast<int>(node_of_rank.size());
  if (k < 1 || m < 0 || k + m > 256)
    return absl::InvalidArgumentError(absl::StrCat("snapshot groups need k >= 1, m >= 0, k + m <= 256; got k = ", k,
                                                   ", m = ", m));
  if (m > 0 && world <= k) {
    return absl::InvalidArgumentError(absl::StrCat("parity must live outside its group: with ", world,
                                                   " ranks, k must be smaller than ", world, " (got ", k, ")"));
  }
  // Ranks in turn over the nodes: the first rank of every node, then the second, ... so consecutive ranks of this
  // order (a group) sit on different nodes as far as the node count allows.
  std::map<int, std::vector<int>> by_node;
  for (int r = 0; r < world; ++r) by_node[node_of_rank[r]].push_back(r);
  std::vector<int> order;
  for (size_t i = 0; order.size() < static_cast<size_t>(world); ++i) {
    for (const auto& [node, ranks] : by_node) {
      if (i < ranks.size()) order.push_back(ranks[i]);
    }
  }
  SnapshotLayout layout;
  layout.m_ = m;
  layout.group_of_.assign(world, -1);
  layout.index_in_group_.assign(world, -1);
  layout.held_.assign(world, {});
  for (int at = 0; at < world; at += k) {
    Group g;
    for (int i = at; i < std::min(world, at + k); ++i) {
      layout.group_of_[order[i]] = static_cast<int>(layout.groups_.size());
      layout.index_in_group_[order[i]] = static_cast<int>(g.members.size());
      g.members.push_back(order[i]);
    }
    layout.groups_.push_back(std::move(g));
  }
  std::vector<int> load(world, 0);  // parity shards held
  for (size_t gi = 0; gi < layout.groups_.size(); ++gi) {
    Group& g = layout.groups_[gi];
    std::map<int, int> on_node;  // the group's shards per node
    for (int r : g.members) ++on_node[node_of_rank[r]];
    for (int j = 0; j < m; ++j) {
      int best = -1;
      for (int r = 0; r < world; ++r) {
        if (layout.group_of_[r] == static_cast<int>(gi)) continue;
        if (std::find(g.parity_holders.begin(), g.parity_holders.end(), r) != g.parity_holders.end()) continue;
        auto key = [&](int x) { return std::tuple(on_node[node_of_rank[x]], load[x], x); };
        if (best < 0 || key(r) < key(best)) best = r;
      }
      g.parity_holders.push_back(best);
      ++load[best];
      ++on_node[node_of_rank[best]];
      layout.held_[best].emplace_back(static_cast<int>(gi), j);
    }
  }
  return layout;
}

bool SnapshotLayout::tolerates(const std::vector<bool>& lost) const {
  for (const Group& g : groups_) {
    int gone = 0;
    for (int r : g.members) gone += lost[r];
    for (int r : g.parity_holders) gone += lost[r];
    if (gone > m_) return false;
  }
  return true;
}

}  // namespace memtrain::checkpoint
