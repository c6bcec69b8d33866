#include "model/positions.h"

namespace memtrain::model {

absl::StatusOr<Tensor> token_positions(int64_t B, int64_t T) {
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, Tensor::empty({B * T}, DType::kI32, MemCategory::kWorkspace));
  for (int64_t i = 0; i < B * T; ++i) pos.i32()[i] = static_cast<int32_t>(i % T);
  return pos;
}

}  // namespace memtrain::model
