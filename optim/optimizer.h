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

// One array of optimizer state that a checkpoint stores as dataset optim/<parameter>/<name>, with the global shape
// checkpoint_layout gives. `data` is read from (a save) or written into (a resume, before restore()).
struct CheckpointArray {
  OptimTarget target;  // whose state it is
  std::string name;    // "m", "v", "row", "proj", ...
  // false: target.n values aligned with the target's elements (the layout shape is the parameter's, and each rank
  // stores and reads its own elements, on any mesh). true: the whole array, which this rank alone holds (it
  // updates the whole matrix).
  bool whole = false;
  DType dtype = DType::kF32;
  void* data = nullptr;
};

// What a checkpoint holds for one parameter under an optimizer: the same on every rank, whatever it holds.
struct CheckpointArraySpec {
  std::string name;
  Shape shape;  // global
  DType dtype = DType::kF32;
};
// For `p` (global shapes: local_shape == shape) under optimizer cfg.name.
std::vector<CheckpointArraySpec> checkpoint_layout(const model::Param& p, const OptimConfig& cfg);

// Where the targets' values may be out of memory between updates (offload.parameters: parallel::ValueShard): an
// optimizer that accepts one calls before(i) ahead of touching target i's value and after(i) once done with it, for
// i in increasing order, then finish() at the end of the step.
class ValueResidency {
 public:
  virtual ~ValueResidency() = default;
  virtual absl::Status before(size_t target) = 0;
  virtual absl::Status after(size_t target) = 0;
  virtual absl::Status finish() = 0;
};

class Optimizer {
 public:
  Optimizer() = default;
  Optimizer(Optimizer&&) = default;
  Optimizer& operator=(Optimizer&&) = default;
  virtual ~Optimizer() = default;
  // Whether set_value_residency works: the optimizers that update targets one after the other, each from its own
  // elements (adamw, adamw8bit and AdamW with its state on SSD).
  virtual bool takes_value_residency() const { return false; }
  void set_value_residency(std::unique_ptr<ValueResidency> residency) { residency_ = std::move(residency); }
  // Each step once the gradients are final, before their norm: an optimizer that trains a subset (LISA) picks it
  // and zeroes the other targets' gradients, so that the norm and its clipping count only what it trains.
  virtual absl::Status prepare_step() { return absl::OkStatus(); }
  // One update of every target from its gradient, at learning rate `lr`.
  virtual absl::Status step(double lr) = 0;
  // Steps taken: counted by each step() (step_), or a wrapper's inner optimizer's.
  virtual int64_t steps_taken() const { return step_; }
  // What a checkpoint stores of this rank's state: its arrays, pointing into the state itself or, for state kept in
  // another form (8-bit codes), into `staging`, filled with the current values.
  struct CheckpointStates {
    std::vector<CheckpointArray> arrays;
    std::vector<Tensor> staging;
  };
  virtual absl::StatusOr<CheckpointStates> checkpoint_state() = 0;
  // Before a resume asks checkpoint_state() for the arrays to read: a state whose layout depends on the step
  // (LISA's trained blocks) takes the one it has after `steps_taken` steps.
  virtual absl::Status prepare_resume(int64_t steps_taken) { return absl::OkStatus(); }
  // After a resume read `states` (from checkpoint_state()) back: takes over staged arrays and the step count. By
  // default only the count: state whose arrays checkpoint_state() pointed into was read in place.
  virtual absl::Status restore(const CheckpointStates& states, int64_t steps_taken) {
    step_ = steps_taken;
    return absl::OkStatus();
  }

 protected:
  int64_t step_ = 0;  // step() counts
  absl::Status before_target(size_t i) { return residency_ ? residency_->before(i) : absl::OkStatus(); }
  absl::Status after_target(size_t i) { return residency_ ? residency_->after(i) : absl::OkStatus(); }
  absl::Status finish_targets() { return residency_ ? residency_->finish() : absl::OkStatus(); }

 private:
  std::unique_ptr<ValueResidency> residency_;
};

// Whether optimizer `name` updates a weight matrix from its whole gradient (a projection or a factored moment), so
// that a rank must hold whole matrices: adafactor, apollo, apollo_mini, galore_adamw, smmf, coap_adamw.
bool works_on_whole_matrices(const std::string& name);

// Whether optimizer optim.name needs `p` whole: the matrices GaLore, APOLLO and COAP project (2-D weights); every tensor
// for Adafactor (it factors matrices and clips each tensor's update by its RMS) and SMMF (it factors every tensor).
bool needs_whole_tensor(const model::Param& p, const OptimConfig& cfg);

// Bytes of state the optimizer optim.name names keeps for a target (the memory plan's figure, exact).
int64_t optimizer_state_bytes(const OptimTarget& target, const OptimConfig& cfg);

// The optimizer optim.name names, with its state (category optimizer_state) for `targets`, whose memory must
// outlive it. seed: the run's, for optimizers that draw random projections.
absl::StatusOr<std::unique_ptr<Optimizer>> create_optimizer(std::vector<OptimTarget> targets, const OptimConfig& cfg,
                                                            uint64_t seed = 0);

}  // namespace memtrain::optim
