// TensorParallel: what a layer needs to know about the tp dimension (Megatron-style): this rank's position, which
// part of each split dimension it holds, and the collectives over the tp group. Size 1 (the default) is the
// single-process model: nothing is split and every collective is a no-op.
#pragma once

#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "core/tensor.h"
#include "parallel/communicator.h"

namespace memtrain::model {

using IndexRange = std::pair<int64_t, int64_t>;  // [begin, end)

struct TensorParallel {
  int rank = 0, size = 1;
  // The tp group, rank() == rank and size() == size; null when size is 1, or when only shapes are wanted (the
  // memory plan builds the model of rank 0 without communicating).
  parallel::Communicator* comm = nullptr;

  static TensorParallel over(parallel::Communicator& tp) { return {tp.rank(), tp.size(), &tp}; }
  static TensorParallel shapes_of_rank(int rank, int size) { return {rank, size, nullptr}; }

  // This rank's part of [0, n) split into `size` contiguous parts, the first n % size parts one longer (so rank 0
  // holds the most). Heads and widths split evenly (checked before the model is built); a vocabulary need not.
  IndexRange part(int64_t n) const { return part_of(rank, n); }
  IndexRange part_of(int r, int64_t n) const;
  int64_t part_size(int64_t n) const { return part(n).second - part(n).first; }

  // In-place sums over the tp group. Every rank gets the same bits: MPI's all-reduce combines each element once
  // and hands the result around (ring) or pairs commutatively (recursive doubling).
  absl::Status sum(float* data, int64_t n) const;
  absl::Status sum(Tensor& t) const { return sum(t.f32(), t.numel()); }
  absl::Status max(float* data, int64_t n) const;
};

}  // namespace memtrain::model
