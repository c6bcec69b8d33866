#include "model/context_parallel.h"

#include <algorithm>
#include <vector>

#include "core/status.h"

namespace memtrain::model {

absl::StatusOr<Tensor> ContextParallel::local_tokens(const Tensor& whole) const {
  MEMTRAIN_CHECK(whole.ndim() == 2 && whole.dtype() == DType::kI32);
  const int64_t B = whole.dim(0), T = whole.dim(1);
  MEMTRAIN_CHECK_MSG(T % pieces() == 0, "the sequence length must be a multiple of the context-parallel pieces");
  const int64_t c = T / chunks(), p = T / pieces();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor local, Tensor::empty({slots * B, p}, DType::kI32, MemCategory::kActivations));
  for (int j = 0; j < slots; ++j)
    for (int64_t b = 0; b < B; ++b)
      std::copy_n(whole.i32() + b * T + chunk_of(rank, j) * c + a2a_rank * p, p, local.i32() + (j * B + b) * p);
  return local;
}

absl::StatusOr<Tensor> ContextParallel::positions(int64_t B, int64_t T) const {
  MEMTRAIN_CHECK(B % slots == 0);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, Tensor::empty({B * T}, DType::kI32, MemCategory::kWorkspace));
  const int64_t per_slot = B / slots;
  for (int64_t row = 0; row < B; ++row) {
    const int64_t first = (chunk_of(rank, static_cast<int>(row / per_slot)) * a2a_size + a2a_rank) * T;
    for (int64_t t = 0; t < T; ++t) pos.i32()[row * T + t] = static_cast<int32_t>(first + t);
  }
  return pos;
}

absl::Status ContextParallel::sum(double& value) const {
  if (group_size() == 1) return absl::OkStatus();
  parallel::Communicator* all_ranks = group != nullptr ? group : comm;
  MEMTRAIN_CHECK(all_ranks != nullptr);
  std::vector<double> all(group_size());
  MEMTRAIN_RETURN_IF_ERROR(all_ranks->all_gather(&value, all.data(), sizeof(double), DType::kU8));
  value = 0;  // in rank order, so every rank gets the same bits
  for (double v : all) value += v;
  return absl::OkStatus();
}

}  // namespace memtrain::model
