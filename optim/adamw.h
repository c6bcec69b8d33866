// AdamW with decoupled weight decay (Loshchilov & Hutter), operation for operation as torch.optim.AdamW. Weight
// decay applies to matrices; norms, biases and embeddings are decayed only when the config says so.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "model/params.h"
#include "optim/optim_config.h"

namespace memtrain::optim {

class AdamW {
 public:
  // Allocates the two moments (category optimizer_state) for every parameter of `params`, which must outlive this.
  static absl::StatusOr<AdamW> create(model::ParamSet& params, const OptimConfig& cfg);

  // One update of every parameter from its gradient, at learning rate `lr`.
  void step(double lr);
  int64_t steps_taken() const { return step_; }
  bool decays(const model::Param& p) const;

 private:
  AdamW(model::ParamSet& params, const OptimConfig& cfg) : params_(&params), cfg_(cfg) {}

  model::ParamSet* params_;  // not owned
  OptimConfig cfg_;
  std::vector<Tensor> m_, v_;  // parallel to params_->all()
  int64_t step_ = 0;
};

}  // namespace memtrain::optim
