#include "optim/adamw.h"

#include "core/cpu/adamw.h"

namespace memtrain::optim {

absl::StatusOr<AdamW> AdamW::create(model::ParamSet& params, const OptimConfig& cfg) {
  return create(whole_targets(params), cfg);
}

absl::StatusOr<AdamW> AdamW::create(std::vector<OptimTarget> targets, const OptimConfig& cfg) {
  AdamW opt(std::move(targets), cfg);
  for (const OptimTarget& t : opt.targets_) {
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor m, Tensor::zeros({t.n}, DType::kF32, MemCategory::kOptimizerState));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor v, Tensor::zeros({t.n}, DType::kF32, MemCategory::kOptimizerState));
    opt.m_.push_back(std::move(m));
    opt.v_.push_back(std::move(v));
  }
  return opt;
}

absl::Status AdamW::step(double lr) {
  ++step_;
  for (size_t i = 0; i < targets_.size(); ++i) {
    const OptimTarget& t = targets_[i];
    const float wd = decays(*t.param) ? static_cast<float>(cfg_.weight_decay) : 0.0f;
    cpu::adamw_step(t.value, t.grad, m_[i].f32(), v_[i].f32(), t.n, static_cast<float>(lr),
                    static_cast<float>(cfg_.beta1), static_cast<float>(cfg_.beta2), static_cast<float>(cfg_.eps), wd,
                    step_, ThreadPool::global());
  }
  return absl::OkStatus();
}

}  // namespace memtrain::optim
