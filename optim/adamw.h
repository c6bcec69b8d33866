// AdamW with decoupled weight decay (Loshchilov & Hutter), operation for operation as torch.optim.AdamW. Weight
// decay applies to matrices; norms, biases and embeddings are decayed only when the config says so.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "model/params.h"
#include "optim/optim_config.h"

namespace memtrain::optim {

// A piece of one parameter the optimizer updates: n elements of value and gradient (a ZeRO shard holds pieces).
struct OptimTarget {
  const model::Param* param;  // its kind decides weight decay
  float* value;
  const float* grad;
  int64_t n;
};

class AdamW {
 public:
  // Allocates the two moments (category optimizer_state) for every parameter of `params`, which must outlive this.
  static absl::StatusOr<AdamW> create(model::ParamSet& params, const OptimConfig& cfg);
  // The same for the given pieces only; their memory must outlive this.
  static absl::StatusOr<AdamW> create(std::vector<OptimTarget> targets, const OptimConfig& cfg);

  // One update of every parameter from its gradient, at learning rate `lr`.
  void step(double lr);
  int64_t steps_taken() const { return step_; }
  bool decays(const model::Param& p) const;

 private:
  AdamW(std::vector<OptimTarget> targets, const OptimConfig& cfg) : targets_(std::move(targets)), cfg_(cfg) {}

  std::vector<OptimTarget> targets_;
  OptimConfig cfg_;
  std::vector<Tensor> m_, v_;  // parallel to targets_
  int64_t step_ = 0;
};

}  // namespace memtrain::optim
