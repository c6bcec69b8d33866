// `memtrain plan`: the bytes per process by category that a config will hold at its peak, predicted from shapes
// before anything is allocated. Tests hold it against the allocator's measured peaks.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/memory.h"
#include "trainer/config.h"

namespace memtrain::trainer {

struct MemoryPlan {
  std::array<int64_t, kNumMemCategories> bytes{};  // peak per category, indexed by MemCategory
  int64_t total = 0;                                // sum of the category peaks (an upper bound of the peak total)
  int64_t parameters_count = 0;                     // trained (a fine-tune's adapters)
  int64_t frozen_count = 0;                         // a fine-tune's frozen base
  int ranks = 1;                                    // data-parallel ranks (dp x cp: ZeRO shards over both)
  int64_t budget = 0;                               // memory.budget, 0 = none
  int pp_rank = 0;                                  // the pipeline rank planned
  std::vector<int64_t> stage_totals;                // plan_memory_of_largest_stage: every pp rank's total
  bool fits() const { return budget == 0 || total <= budget; }
};

// Bytes per rank (rank 0, which owns the most) for the mesh on `world_size` processes and zero.stage, from the
// shapes and the data-parallel engine's layout (parallel/shard_layout.h): parameters and gradients at 4 bytes per
// element and the optimizer's state (optim::optimizer_state_bytes), whole or sharded as the stage says, plus stage 3's gathered units and
// stage 2-3's transient unit gradients; communication the reduction receive buffers; activations the model's
// predicted high-water mark of one micro-batch plus the batch's token tensors; workspace the head's logits chunk.
// Mesh errors are the ones `memtrain train` gives. With pp > 1 the rank is the one of pipeline rank `pp_rank`
// (stage 0, the first, holds the most micro-batches in flight; the last the head).
absl::StatusOr<MemoryPlan> plan_memory(const Config& cfg, int world_size = 1, int pp_rank = 0);
// `memtrain plan`: the plan of the pipeline rank with the largest total (ranks differ in layers, embeddings and
// head, and micro-batches in flight), with every rank's total in stage_totals; plan_memory's without a pipeline.
absl::StatusOr<MemoryPlan> plan_memory_of_largest_stage(const Config& cfg, int world_size);

std::string plan_table(const Config& cfg, const MemoryPlan& plan);
// {"parameters": bytes, ..., "total": ..., "budget": ..., "fits": ..., "pp_rank": ...[, "stage_totals": [...]]}
std::string plan_json(const MemoryPlan& plan);

}  // namespace memtrain::trainer
