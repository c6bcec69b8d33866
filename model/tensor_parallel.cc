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

absl::Status TensorParallel::max(float* data, int64_t n) const {
  if (size == 1) return absl::OkStatus();
  MEMTRAIN_CHECK_MSG(comm != nullptr, "a shapes-only tensor-parallel model cannot run");
  return comm->all_reduce(data, data, n, DType::kF32, parallel::ReduceOp::kMax);
}

}  // namespace memtrain::model
