// `memtrain train` and `memtrain eval`: the training loop (micro-batches, clipping, AdamW, schedule, logging,
// evaluation), the final weights and samples.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "model/model.h"
#include "parallel/communicator.h"
#include "trainer/config.h"
#include "trainer/run_data.h"

namespace memtrain::trainer {

// Mean loss per normalised position (run_data.h) over the first `batches` evaluation batches of `data` (at most
// all of them; no gradients, nothing kept). With `dp`, collective over it: the batches are spread over its ranks
// and the result, summed in batch order, is the same number one process gets.
absl::StatusOr<double> evaluate_loss(model::Model& model, const RunData& data, int64_t batches,
                                     parallel::Communicator* dp = nullptr);

// Prints output.samples texts generated from output.prompt ("\n" when empty).
absl::Status print_samples(const Config& cfg, model::Model& model);

struct TrainResult {
  std::vector<double> losses;  // one per step
  double final_val_loss = 0;
  // The stop signal (trainer/stop_signal.h) that ended the run early at a step boundary, its checkpoint saved; 0
  // when it ran to train.max_steps (final_val_loss is then set).
  int stop_signal = 0;
};
// Runs the whole job `cfg` describes in this one process; `quiet` drops the progress lines (tests).
absl::StatusOr<TrainResult> run_training(const Config& cfg, bool quiet = false);
// The same on the mesh over `world` (collective; every rank returns the same losses). Rank 0 writes output.dir
// and prints; `local_ranks` processes share this node's cores.
absl::StatusOr<TrainResult> run_training(const Config& cfg, parallel::Communicator& world, int local_ranks,
                                         bool quiet);

}  // namespace memtrain::trainer
