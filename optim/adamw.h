// AdamW with decoupled weight decay (Loshchilov & Hutter), operation for operation as torch.optim.AdamW. Weight
// decay applies to matrices; norms, biases and embeddings are decayed only when the config says so.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "model/params.h"
#include "optim/optimizer.h"

namespace memtrain::optim {

// One AdamW update of target t with fp32 moments m and v (t.n each) at step `step` (1-based): what AdamW does to
// every target and the other optimizers to the tensors they do not treat specially.
void adamw_update(const OptimTarget& t, float* m, float* v, const OptimConfig& cfg, double lr, int64_t step);

class AdamW final : public Optimizer {
 public:
  // Allocates the two moments (category optimizer_state) for every parameter of `params`, which must outlive this.
  static absl::StatusOr<AdamW> create(model::ParamSet& params, const OptimConfig& cfg);
  // The same for the given pieces only; their memory must outlive this.
  static absl::StatusOr<AdamW> create(std::vector<OptimTarget> targets, const OptimConfig& cfg);

  absl::Status step(double lr) override;
  bool takes_value_residency() const override { return true; }
  absl::StatusOr<CheckpointStates> checkpoint_state() override;
  bool decays(const model::Param& p) const { return optim::decays(p, cfg_); }

 private:
  AdamW(std::vector<OptimTarget> targets, const OptimConfig& cfg) : targets_(std::move(targets)), cfg_(cfg) {}

  std::vector<OptimTarget> targets_;
  OptimConfig cfg_;
  std::vector<Tensor> m_, v_;  // parallel to targets_
};

}  // namespace memtrain::optim
