// Position ids of a (B, T) batch: token (b, t) is at position t. Shared by learned positions and RoPE.
#pragma once

#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace memtrain::model {

absl::StatusOr<Tensor> token_positions(int64_t B, int64_t T);  // (B*T) int32, category workspace

}  // namespace memtrain::model
