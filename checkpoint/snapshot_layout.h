// SnapshotLayout: who protects whose in-memory snapshot. Ranks form erasure-coding groups of k data members (the
// last group may be smaller); each group's m parity shards are held by ranks outside the group, so one lost rank
// costs any group at most one of its shards and any m lost ranks leave every group rebuildable. Where the job spans
// nodes, groups take their members from different nodes in turn and each parity shard goes to the least loaded
// rank on the node that holds the fewest of the group's shards, so that losing a whole node costs each group as
// few shards as the node count allows (tolerates() says whether a given loss is recoverable).
#pragma once

#include <vector>

#include "absl/status/statusor.h"

namespace memtrain::checkpoint {

class SnapshotLayout {
 public:
  struct Group {
    std::vector<int> members;         // data shards, in shard order
    std::vector<int> parity_holders;  // parity shard j lives on parity_holders[j]
  };

  // node_of_rank[r]: the node of rank r (any integers). m > 0 needs more than one group (world > k).
  static absl::StatusOr<SnapshotLayout> plan(const std::vector<int>& node_of_rank, int k, int m);

  const std::vector<Group>& groups() const { return groups_; }
  int group_of(int rank) const { return group_of_[rank]; }
  int index_in_group(int rank) const { return index_in_group_[rank]; }
  // (group, parity index) pairs whose parity this rank holds.
  const std::vector<std::pair<int, int>>& parity_held_by(int rank) const { return held_[rank]; }
  int m() const { return m_; }
  // Whether every group keeps at least its data-member count of shards when the ranks marked in `lost` are gone.
  bool tolerates(const std::vector<bool>& lost) const;

 private:
  int m_ = 0;
  std::vector<Group> groups_;
  std::vector<int> group_of_, index_in_group_;
  std::vector<std::vector<std::pair<int, int>>> held_;
};

}  // namespace memtrain::checkpoint
