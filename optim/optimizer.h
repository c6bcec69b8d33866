// The optimizer interface the trainer steps (optim.name picks the implementation) and the pieces it updates.
// Every optimizer keeps state only for its targets, so under ZeRO a rank holds the states of its shard.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/params.h"
#include "optim/optim_config.h"

namespace memtrain::optim {

// A piece of one parameter the optimizer updates: elements [offset, offset + n) of the parameter (this rank's
// tensor-parallel part of it), value and gradient pointing at element `offset`. A ZeRO shard holds pieces.
struct OptimTarget {
  const model::Param* param;  // its kind decides weight decay; its shape, what a state may be factored by
  float* value;
  const float* grad;
  int64_t n;
  int64_t offset = 0;
};

// Every parameter of `params` whole (a single process without an engine).
std::vector<OptimTarget> whole_targets(model::ParamSet& params);

// Whether weight decay applies to `p`: matrices always, embeddings, norms and biases as the config says.
bool decays(const model::Param& p, const OptimConfig& cfg);

// An array of optimizer state that a checkpoint stores beside the parameter: t.n floats aligned with the target's
// elements (so it is stored as a global tensor of the parameter's shape, and read back on any mesh).
struct CheckpointState {
  OptimTarget target;
  std::string name;  // "m", "v"
  float* data;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update of every target from its gradient, at learning rate `lr`.
  virtual absl::Status step(double lr) = 0;
  virtual int64_t steps_taken() const = 0;
  // What a checkpoint stores: arrays named `names` for each target (their contents are read or written in place),
  // or Unimplemented for the optimizers whose state checkpoints do not cover yet.
  struct CheckpointStates {
    std::vector<std::string> names;
    std::vector<CheckpointState> arrays;
  };
  virtual absl::StatusOr<CheckpointStates> checkpoint_state() {
    return absl::UnimplementedError("checkpoints do not store this optimizer's state yet");
  }
  // After a checkpoint's state was read back: the step count it was saved at.
  virtual void restore_steps_taken(int64_t steps) {}
};

// Whether optimizer `name` updates a weight matrix from its whole gradient (a projection or a factored moment), so
// that a rank must hold whole matrices: adafactor, apollo, apollo_mini, galore_adamw.
bool works_on_whole_matrices(const std::string& name);

// Whether optimizer optim.name needs `p` whole: the matrices GaLore and APOLLO project (2-D weights); every tensor
// for Adafactor (it factors matrices and clips each tensor's update by its RMS).
bool needs_whole_tensor(const model::Param& p, const OptimConfig& cfg);

// Bytes of state the optimizer optim.name names keeps for a target (the memory plan's figure, exact).
int64_t optimizer_state_bytes(const OptimTarget& target, const OptimConfig& cfg);

// The optimizer optim.name names, with its state (category optimizer_state) for `targets`, whose memory must
// outlive it. seed: the run's, for optimizers that draw random projections.
absl::StatusOr<std::unique_ptr<Optimizer>> create_optimizer(std::vector<OptimTarget> targets, const OptimConfig& cfg,
                                                            uint64_t seed = 0);

}  // namespace memtrain::optim
