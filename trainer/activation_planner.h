// The planner behind memory.activations = "auto": the per-block activation policies, and if they are not enough a
// smaller micro-batch with more accumulation steps (the same global batch), that fit memory.budget with the least
// predicted slowdown. Memory comes from plan_memory (the figures `memtrain plan` prints and the tests hold to the
// allocator); time from a quick probe of this machine: the sgemm rate and the swap_ssd tier's write and read
// rates under offload.ssd_path.
//
// Candidates: the lowest s blocks swap_ssd (with offload.ssd_path), the next r recompute, the rest keep (the
// top block's own tensors are needed first in backward, and what sits below it is what the high-water mark adds
// up), for every s with the fewest r that fit (found by bisection: more recompute holds less and costs more), and
// every micro-batch that divides train.batch_size; with offload.ssd_path and AdamW, each also with AdamW's moments
// on the disk (offload.optimizer = "ssd"), and at ZeRO-3 with adamw or adamw8bit also with the parameter shard
// there (offload.parameters = "ssd"). swap_host is never chosen: on the CPU
// backend it moves bytes from `activations` to `swap`, which the budget counts alike.
//
// Predicted time per micro-batch, from a block's forward time f (its FLOPs over the sgemm rate): keep costs
// nothing extra; recompute f; swap_ssd what its writes and reads take beyond the forward (f) and backward (2f) they
// overlap; the optimizer's moments on disk, their bytes read and written once per step; the shard on disk, read and
// written once by the update, plus what its two reads per micro-batch take beyond the step's compute. Each halving of the micro-batch is charged 5% of the step, for its smaller matrix products (a rule of
// thumb, not a measurement), so the planner splits the batch only when the policies cannot fit it.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/config.h"
#include "trainer/plan.h"

namespace memtrain::trainer {

struct Bandwidths {
  double flops = 0;                    // sgemm FLOP/s with this process's kernel threads
  double ssd_write = 0, ssd_read = 0;  // bytes/s through the swap_ssd tier; 0 without offload.ssd_path
};
// Measures the above in well under a second (sgemm of 384 x 384; 32 MiB through the tier).
absl::StatusOr<Bandwidths> probe_bandwidths(const Config& cfg);

struct PolicyPlan {
  std::vector<std::string> activations;  // one per layer
  int64_t batch_size = 0, grad_accum = 0;
  bool optimizer_on_ssd = false;         // offload.optimizer = "ssd"
  bool parameters_on_ssd = false;        // offload.parameters = "ssd"
  MemoryPlan memory;
  double slowdown = 1;  // predicted step time over keep's at the configured micro-batch
};

bool wants_auto_policies(const Config& cfg);  // memory.activations = ["auto"]
// The plan that fits memory.budget for `world_size` ranks with the least predicted slowdown. No plan fits:
// InvalidArgument naming memory.budget, with the smallest budget some plan meets, that plan and its breakdown.
absl::StatusOr<PolicyPlan> plan_policies(const Config& cfg, int world_size, const Bandwidths& bw);
// cfg with the plan's memory.activations (recompute_segment 1), train.batch_size, train.grad_accum,
// offload.optimizer and offload.parameters.
Config with_policies(const Config& cfg, const PolicyPlan& plan);
std::string describe(const PolicyPlan& plan);  // "recompute x3, keep; micro-batch 8 x 2; predicted slowdown 1.12x"

}  // namespace memtrain::trainer
