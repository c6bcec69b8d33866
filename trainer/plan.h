// `memtrain plan`: the bytes per process by category that a config will hold at its peak, predicted from shapes
// before anything is allocated. Tests hold it against the allocator's measured peaks.
#pragma once

#include <array>
#include <string>

#include "absl/status/statusor.h"
#include "core/memory.h"
#include "trainer/config.h"

namespace memtrain::trainer {

struct MemoryPlan {
  std::array<int64_t, kNumMemCategories> bytes{};  // peak per category, indexed by MemCategory
  int64_t total = 0;                                // sum of the category peaks (an upper bound of the peak total)
  int64_t parameters_count = 0;
  int64_t budget = 0;                               // memory.budget, 0 = none
  bool fits() const { return budget == 0 || total <= budget; }
};

// One process, no sharding yet: parameters 4 bytes per parameter, gradients 4, AdamW's two moments 8; activations
// the model's predicted high-water mark of one micro-batch plus the batch's token tensors; workspace the head's
// logits chunk.
absl::StatusOr<MemoryPlan> plan_memory(const Config& cfg);

std::string plan_table(const Config& cfg, const MemoryPlan& plan);
std::string plan_json(const MemoryPlan& plan);  // {"parameters": bytes, ..., "total": ..., "budget": ..., "fits": ...}

}  // namespace memtrain::trainer
