// Where every parameter element lives when model states are sharded ZeRO-style over `ranks` data-parallel ranks.
// Parameters are grouped in units (the model's layers). A unit's tensors are packed, in order, each starting at a
// multiple of kShardAlign, into one flat buffer padded with zeros to a multiple of ranks * kShardAlign elements;
// rank r owns slice r (the r-th of `ranks` equal parts) of every unit. So a rank's piece of a tensor starts and
// ends on the tensor's 256-element blocks (or the tensor's end): blockwise state (8-bit optimizers) is the same
// whatever the number of ranks. Full buffers concatenate the padded units; a rank's shard buffer
// concatenates its slices. Slices are multiples of kShardAlign, the block of the gradient norm, so the norm's
// blocks are the same whatever the number of ranks (padding adds zeros).
#pragma once

#include <cstdint>
#include <vector>

namespace memtrain::parallel {

inline constexpr int64_t kShardAlign = 256;  // elements: the norm block, 1 KiB of fp32

// The part of one tensor that lies in one rank's slice of its unit.
struct ShardSegment {
  int unit = 0;
  int entry = 0;           // index of the tensor in the flat list of all units' tensors
  int64_t offset = 0;      // first element, within the tensor
  int64_t n = 0;           // elements
  int64_t shard_pos = 0;   // where it sits in the rank's shard buffer
  int64_t full_pos = 0;    // where it sits in a full buffer
};

class ShardLayout {
 public:
  // unit_numels[u] = the element counts of unit u's tensors, in order. ranks >= 1.
  ShardLayout(std::vector<std::vector<int64_t>> unit_numels, int ranks);

  int ranks() const { return ranks_; }
  int num_units() const { return static_cast<int>(unit_numels_.size()); }
  int num_entries() const { return static_cast<int>(entry_unit_.size()); }
  int entry_unit(int entry) const { return entry_unit_[entry]; }
  int64_t entry_numel(int entry) const { return entry_numel_[entry]; }
  int64_t entry_full_pos(int entry) const { return entry_full_pos_[entry]; }
  int64_t unit_padded(int u) const { return unit_padded_[u]; }    // elements, a multiple of ranks * kShardAlign
  int64_t unit_slice(int u) const { return unit_padded_[u] / ranks_; }
  int64_t unit_full_pos(int u) const { return unit_full_pos_[u]; }
  int64_t unit_shard_pos(int u) const { return unit_shard_pos_[u]; }
  int64_t full_size() const { return full_size_; }    // padded total
  int64_t shard_size() const { return full_size_ / ranks_; }
  int64_t numel() const { return numel_; }             // unpadded total
  // The tensor pieces in rank r's slices, in full-buffer order.
  std::vector<ShardSegment> segments_of_rank(int r) const;
  // Every tensor whole (what a rank that owns everything updates), shard_pos == full_pos.
  std::vector<ShardSegment> whole_entries() const;

 private:
  std::vector<std::vector<int64_t>> unit_numels_;
  int ranks_;
  std::vector<int> entry_unit_;
  std::vector<int64_t> entry_numel_, entry_full_pos_;
  std::vector<int64_t> unit_padded_, unit_full_pos_, unit_shard_pos_;
  int64_t full_size_ = 0, numel_ = 0;
};

}  // namespace memtrain::parallel
