// Learning-rate schedules: linear warmup, then constant, cosine or linear decay to optim.min_lr.
#pragma once

#include <cstdint>

#include "optim/optim_config.h"

namespace memtrain::optim {

// The rate for 0-based `step`. Warmup rises linearly to optim.lr over warmup_steps (step 0 gets lr/warmup, never
// 0); decay then runs over decay_steps (0: max_steps) and stays at min_lr afterwards.
double learning_rate(const OptimConfig& cfg, int64_t step, int64_t max_steps);

}  // namespace memtrain::optim
