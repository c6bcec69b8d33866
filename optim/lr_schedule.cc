#include "optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace memtrain::optim {

double learning_rate(const OptimConfig& cfg, int64_t step, int64_t max_steps) {
  if (step < cfg.warmup_steps) return cfg.lr * static_cast<double>(step + 1) / static_cast<double>(cfg.warmup_steps);
  if (cfg.schedule == "constant") return cfg.lr;
  const int64_t end = cfg.resolved_decay_steps(max_steps);
  if (step >= end || end <= cfg.warmup_steps) return cfg.min_lr;
  const double progress = static_cast<double>(step - cfg.warmup_steps) / static_cast<double>(end - cfg.warmup_steps);
  const double coef = cfg.schedule == "linear" ? 1.0 - progress : 0.5 * (1.0 + std::cos(M_PI * progress));
  return cfg.min_lr + coef * (cfg.lr - cfg.min_lr);
}

}  // namespace memtrain::optim
