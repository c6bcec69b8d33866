// An optimizer whose state is dropped and created afresh every `period` steps (PeriodicLoRA's stages): it wraps the
// one a factory makes and makes a new one on restart(), which its owner calls after each period's last step (the
// adapters it trains start again then). The step count it reports, and checkpoints store, is the run's; the inner
// optimizer counts from its stage's start (bias correction starts again), which is what a resume gives it back.
#pragma once

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "optim/optimizer.h"

namespace memtrain::optim {

class Restartable final : public Optimizer {
 public:
  using Factory = std::function<absl::StatusOr<std::unique_ptr<Optimizer>>()>;
  static absl::StatusOr<std::unique_ptr<Restartable>> create(Factory factory, int64_t period);

  // Frees the state, then creates it new. Call after step() took a period's last step.
  absl::Status restart();

  bool takes_value_residency() const override { return false; }
  absl::Status prepare_step() override { return inner_->prepare_step(); }
  absl::Status step(double lr) override;
  absl::StatusOr<CheckpointStates> checkpoint_state() override { return inner_->checkpoint_state(); }
  absl::Status prepare_resume(int64_t steps_taken) override { return inner_->prepare_resume(steps_taken % period_); }
  absl::Status restore(const CheckpointStates& states, int64_t steps_taken) override;

 private:
  Restartable(Factory factory, int64_t period) : factory_(std::move(factory)), period_(period) {}

  Factory factory_;
  int64_t period_;
  std::unique_ptr<Optimizer> inner_;
};

}  // namespace memtrain::optim
