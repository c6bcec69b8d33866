// RMSNorm over the last dim (LLaMA's input_layernorm, post_attention_layernorm, norm), fp32, forward and backward.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace memtrain::cpu {

// x, y: (rows, C); weight: (C); rstd: (rows), saved for backward. y = x * rstd * weight with
// rstd = 1 / sqrt(mean(x^2) + eps), as LLaMA's RMSNorm (weight applied after normalising). x and y may alias.
void rms_norm_forward(const float* x, const float* weight, float eps, int64_t rows, int64_t C, float* y, float* rstd,
                      ThreadPool& pool);

// dy, x, dx: (rows, C). dx is written (it may alias dy); dweight (C) +=, independent of the thread count.
void rms_norm_backward(const float* dy, const float* x, const float* rstd, const float* weight, int64_t rows,
                       int64_t C, float* dx, float* dweight, ThreadPool& pool);

}  // namespace memtrain::cpu
