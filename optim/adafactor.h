// Adafactor (Shazeer & Stern, 2018), as Hugging Face's transformers.optimization.Adafactor computes it: the second
// moment of a matrix gradient kept as the exponential averages of its row means and column means of g^2 + 1e-30
// (rows + cols floats instead of rows x cols), the second moment of other tensors whole; decay 1 - t^rate; the
// update g / sqrt(v) with its RMS clipped to optim.adafactor_clip; optionally a first moment of the update; the
// learning rate from the schedule or the relative step size min(1e-2, 1 / sqrt(t)), optionally scaled by
// max(1e-3, RMS(parameter)); decoupled weight decay.
// A matrix needs its whole gradient, so targets are whole tensors (under ZeRO-1/2 or tp, optim/matrix_owners gives each matrix whole to one rank).
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "optim/optimizer.h"

namespace memtrain::optim {

class Adafactor final : public Optimizer {
 public:
  // Fails naming optim.name when a target is not a whole tensor.
  static absl::StatusOr<std::unique_ptr<Optimizer>> create(std::vector<OptimTarget> targets, const OptimConfig& cfg);
  // rows + cols floats for a matrix (the last two dimensions factored), numel for others; plus numel with momentum.
  static int64_t state_bytes(const OptimTarget& t, const OptimConfig& cfg);
  // row (rows) and col (cols) for a matrix, else v; m (the parameter's shape) with momentum.
  static std::vector<CheckpointArraySpec> checkpoint_layout(const model::Param& p, const OptimConfig& cfg);
  absl::Status step(double lr) override;
  absl::StatusOr<CheckpointStates> checkpoint_state() override;

 private:
  struct State {
    int64_t rows = 0, cols = 0;  // rows > 0: factored
    Tensor row, col, v, m;       // row/col means (factored) or v; m with momentum
  };
  Adafactor(std::vector<OptimTarget> targets, const OptimConfig& cfg) : targets_(std::move(targets)), cfg_(cfg) {}
  void step_target(const OptimTarget& t, State& s, double lr);

  std::vector<OptimTarget> targets_;
  OptimConfig cfg_;
  std::vector<State> states_;
  std::vector<float> update_;  // scratch, the largest target's size
};

}  // namespace memtrain::optim
