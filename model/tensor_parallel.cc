#include "model/tensor_parallel.h"

#include <algorithm>

#include "core/status.h"

namespace memtrain::model {

IndexRange TensorParallel::part_of(int r, int64_t n) const {
  MEMTRAIN_CHECK(r >= 0 && r < size);
  const int64_t q = n / size, extra = n % size;
  const int64_t begin = r * q + std::min<int64_t>(r, extra);
  return {begin, begin + q + (r < extra ? 1 : 0)};
}

absl::Status TensorParallel::sum(float* data, int64_t n) const {
  if (size == 1) return absl::OkStatus();
  MEMTRAIN_CHECK_MSG(comm != nullptr, "a shapes-only tensor-parallel model cannot run");
  return comm->all_reduce(data, data, n, DType::kF32, parallel::ReduceOp::kSum);
}

absl::StatusOr<Tensor> TensorParallel::gather_rows(const Tensor& local) const {
  if (!sequence_parallel) return local;
  MEMTRAIN_CHECK(comm != nullptr);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor full, Tensor::empty({local.rows() * size, local.cols()}, DType::kF32,
                                                       MemCategory::kActivations));
  MEMTRAIN_RETURN_IF_ERROR(comm->all_gather(local.f32(), full.f32(), local.numel(), DType::kF32));
  return full;
}

absl::StatusOr<Tensor> TensorParallel::sum_rows(Tensor& full) const {
  if (!sequence_parallel) {
    MEMTRAIN_RETURN_IF_ERROR(sum(full));
    return full;
  }
  MEMTRAIN_CHECK(comm != nullptr && full.rows() % size == 0);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor local, Tensor::empty({full.rows() / size, full.cols()}, DType::kF32,
                                                        MemCategory::kActivations));
  MEMTRAIN_RETURN_IF_ERROR(comm->reduce_scatter(full.f32(), local.f32(), local.numel(), DType::kF32,
                                                parallel::ReduceOp::kSum));
  return local;
}

absl::Status TensorParallel::add_grad_sums(Tensor& parts,
                                           std::initializer_list<std::pair<float*, int64_t>> grads) const {
  if (sequence_parallel) MEMTRAIN_RETURN_IF_ERROR(sum(parts));
  const float* src = parts.f32();
  for (const auto& [grad, n] : grads) {
    for (int64_t i = 0; i < n; ++i) grad[i] += src[i];
    src += n;
  }
  MEMTRAIN_CHECK(src <= parts.f32() + parts.numel());
  return absl::OkStatus();
}

absl::Status TensorParallel::max(float* data, int64_t n) const {
  if (size == 1) return absl::OkStatus();
  MEMTRAIN_CHECK_MSG(comm != nullptr, "a shapes-only tensor-parallel model cannot run");
  return comm->all_reduce(data, data, n, DType::kF32, parallel::ReduceOp::kMax);
}

}  // namespace memtrain::model
