#include "parallel/shard_layout.h"

#include <algorithm>

#include "core/status.h"

namespace memtrain::parallel {

ShardLayout::ShardLayout(std::vector<std::vector<int64_t>> unit_numels, int ranks)
    : unit_numels_(std::move(unit_numels)), ranks_(ranks) {
  MEMTRAIN_CHECK(ranks >= 1);
  const int64_t quantum = ranks * kShardAlign;
  int64_t shard_pos = 0;
  for (size_t u = 0; u < unit_numels_.size(); ++u) {
    unit_full_pos_.push_back(full_size_);
    unit_shard_pos_.push_back(shard_pos);
    int64_t pos = full_size_;
    for (int64_t n : unit_numels_[u]) {
      MEMTRAIN_CHECK(n >= 0);
      entry_unit_.push_back(static_cast<int>(u));
      entry_numel_.push_back(n);
      entry_full_pos_.push_back(pos);
      pos += (n + kShardAlign - 1) / kShardAlign * kShardAlign;  // the next tensor starts on a block boundary
      numel_ += n;
    }
    const int64_t used = pos - full_size_;
    const int64_t padded = std::max<int64_t>(quantum, (used + quantum - 1) / quantum * quantum);
    unit_padded_.push_back(padded);
    full_size_ += padded;
    shard_pos += padded / ranks;
  }
}

std::vector<ShardSegment> ShardLayout::segments_of_rank(int r) const {
  MEMTRAIN_CHECK(r >= 0 && r < ranks_);
  std::vector<ShardSegment> out;
  for (int e = 0; e < num_entries(); ++e) {
    const int u = entry_unit_[e];
    const int64_t slice_begin = unit_full_pos_[u] + r * unit_slice(u), slice_end = slice_begin + unit_slice(u);
    const int64_t begin = std::max(entry_full_pos_[e], slice_begin);
    const int64_t end = std::min(entry_full_pos_[e] + entry_numel_[e], slice_end);
    if (begin >= end) continue;
    out.push_back(ShardSegment{u, e, begin - entry_full_pos_[e], end - begin,
                               unit_shard_pos_[u] + (begin - slice_begin), begin});
  }
  return out;
}

std::vector<ShardSegment> ShardLayout::whole_entries() const {
  std::vector<ShardSegment> out;
  for (int e = 0; e < num_entries(); ++e) {
    if (entry_numel_[e] == 0) continue;
    out.push_back(ShardSegment{entry_unit_[e], e, 0, entry_numel_[e], entry_full_pos_[e], entry_full_pos_[e]});
  }
  return out;
}

}  // namespace memtrain::parallel
