// `memtrain train` and `memtrain eval`: the training loop (micro-batches, clipping, AdamW, schedule, logging,
// evaluation), the final weights and samples.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "data/batch_sampler.h"
#include "model/model.h"
#include "trainer/config.h"

namespace memtrain::trainer {

// The fixed evaluation windows of `val` for cfg's batch and sequence length, checked against the shard's size.
absl::StatusOr<data::BatchSampler> validation_sampler(const Config& cfg, const data::TokenShard& val);
// Mean token loss over the first `batches` fixed evaluation batches of `sampler` (at most all of its windows; no
// gradients, nothing kept).
absl::StatusOr<double> evaluate_loss(model::Model& model, const data::BatchSampler& sampler, int64_t batches);

// Prints output.samples texts generated from output.prompt ("\n" when empty).
absl::Status print_samples(const Config& cfg, model::Model& model);

struct TrainResult {
  std::vector<double> losses;  // one per step
  double final_val_loss = 0;
};
// Runs the whole job `cfg` describes; `quiet` drops the progress lines (tests).
absl::StatusOr<TrainResult> run_training(const Config& cfg, bool quiet = false);

}  // namespace memtrain::trainer
