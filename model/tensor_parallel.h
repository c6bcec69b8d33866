// TensorParallel: what a layer needs to know about the tp dimension (Megatron-style): this rank's position, which
// part of each split dimension it holds, and the collectives over the tp group. Size 1 (the default) is the
// single-process model: nothing is split and every collective is a no-op.
//
// Sequence parallelism (Megatron's SP): outside attention and the MLP (the norms, residual adds, embeddings'
// outputs) a rank holds only rows [r * N/tp, (r+1) * N/tp) of the N = B*T tokens. Entering a tensor-parallel region
// all-gathers the rows (gather_rows); leaving it reduce-scatters the partial sums (sum_rows) where plain tensor
// parallelism all-reduces. Whole parameters used on a rank's rows (norm weights, position table) then get a part
// of their gradient on each rank, summed over tp (add_grad_sums).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <utility>

#include "absl/status/status.h"
#include "core/tensor.h"
#include "parallel/communicator.h"

namespace memtrain::model {

using IndexRange = std::pair<int64_t, int64_t>;  // [begin, end)

struct TensorParallel {
  int rank = 0, size = 1;
  bool sequence_parallel = false;  // only meaningful with size > 1
  // The tp group, rank() == rank and size() == size; null when size is 1, or when only shapes are wanted (the
  // memory plan builds the model of rank 0 without communicating).
  parallel::Communicator* comm = nullptr;

  static TensorParallel over(parallel::Communicator& tp, bool sequence_parallel = false) {
    return {tp.rank(), tp.size(), sequence_parallel && tp.size() > 1, &tp};
  }
  static TensorParallel shapes_of_rank(int rank, int size, bool sequence_parallel = false) {
    return {rank, size, sequence_parallel && size > 1, nullptr};
  }
  // Rows of the N tokens this rank holds outside tensor-parallel regions: N, or N / size with SP.
  int64_t local_rows(int64_t N) const { return sequence_parallel ? N / size : N; }
  int64_t first_local_row(int64_t N) const { return sequence_parallel ? rank * (N / size) : 0; }

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

  // With SP, the (N, C) tensor of every rank's rows, in rank order; otherwise `local` itself.
  absl::StatusOr<Tensor> gather_rows(const Tensor& local) const;
  // `full` (N, C) holds this rank's part of a sum over tp. With SP, this rank's rows of the sum (a new tensor);
  // otherwise the whole sum, in place, returned.
  absl::StatusOr<Tensor> sum_rows(Tensor& full) const;
  // `parts` holds this rank's parts of whole parameters' gradients back to back; sums it over tp in one call (SP
  // only) and adds consecutive segments into the gradients: {grad pointer, elements} in order.
  absl::Status add_grad_sums(Tensor& parts, std::initializer_list<std::pair<float*, int64_t>> grads) const;
};

}  // namespace memtrain::model
