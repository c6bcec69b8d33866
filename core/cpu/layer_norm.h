// LayerNorm over the last dim (GPT-2's ln_1, ln_2, ln_f), fp32, forward and backward.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace memtrain::cpu {

// x, y: (rows, C); weight, bias: (C). y = (x - mean) * rstd * weight + bias, with the biased variance as torch uses;
// bias may be nullptr. mean, rstd: (rows), saved for backward. x and y may alias.
void layer_norm_forward(const float* x, const float* weight, const float* bias, float eps, int64_t rows, int64_t C,
                        float* y, float* mean, float* rstd, ThreadPool& pool);

// dy, x, dx: (rows, C); mean, rstd: (rows) from forward. dx is written (it may alias dy); dweight (C) += and
// dbias (C) += (dbias may be nullptr). The weight/bias sums do not depend on the thread count.
void layer_norm_backward(const float* dy, const float* x, const float* mean, const float* rstd, const float* weight,
                         int64_t rows, int64_t C, float* dx, float* dweight, float* dbias, ThreadPool& pool);

}  // namespace memtrain::cpu
