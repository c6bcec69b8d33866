#include "optim/adamw.h"

#include "core/cpu/adamw.h"

namespace memtrain::optim {

void adamw_update(const OptimTarget& t, float* m, float* v, const OptimConfig& cfg, double lr, int64_t step) {
  const float wd = decays(*t.param, cfg) ? static_cast<float>(cfg.weight_decay) : 0.0f;
  cpu::adamw_step(t.value, t.grad, m, v, t.n, static_cast<float>(lr), static_cast<float>(cfg.beta1),
                  static_cast<float>(cfg.beta2), static_cast<float>(cfg.eps), wd, step, ThreadPool::global());
}

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
    MEMTRAIN_RETURN_IF_ERROR(before_target(i));
    adamw_update(targets_[i], m_[i].f32(), v_[i].f32(), cfg_, lr, step_);
    MEMTRAIN_RETURN_IF_ERROR(after_target(i));
  }
  return finish_targets();
}

absl::StatusOr<Optimizer::CheckpointStates> AdamW::checkpoint_state() {
  CheckpointStates out;
  for (size_t i = 0; i < targets_.size(); ++i) {
    out.arrays.push_back({targets_[i], "m", false, DType::kF32, m_[i].f32()});
    out.arrays.push_back({targets_[i], "v", false, DType::kF32, v_[i].f32()});
  }
  return out;
}

}  // namespace memtrain::optim
