// The AdamW update over one fp32 tensor, operation for operation as torch.optim.AdamW (torch 1.13, single-tensor,
// non-amsgrad) performs it in fp32.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace memtrain::cpu {

// param, grad, m, v: n elements; step is 1-based. In this order:
//   p *= 1 - lr * weight_decay;  m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g;
//   bc1 = 1 - beta1^step;  bc2 = 1 - beta2^step;  denom = sqrt(v) / sqrt(bc2) + eps;  p -= (lr / bc1) * m / denom.
void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, int64_t step, ThreadPool& pool);

}  // namespace memtrain::cpu
