// How fast a swap tier moves bytes: `count` tensors of `tensor_bytes` written (all queued, then waited for) and
// read back, in bytes per second each way. The planner's quick probe and bench/activation_swap use it.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "core/swap_tier.h"

namespace memtrain::offload {

struct SwapRates {
  double write = 0, read = 0;  // bytes/s
};
// The tensors are category `category` while they exist; `sync` runs after the writes are done (e.g. fdatasync).
absl::StatusOr<SwapRates> measure_swap_rates(SwapTier& tier, int64_t tensor_bytes, int count, MemCategory category,
                                             void (*sync)(SwapTier&) = nullptr);

}  // namespace memtrain::offload
