// GELU with the tanh approximation (GPT-2's MLP; torch's gelu(approximate='tanh')), fp32, forward and backward.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace memtrain::cpu {

// y[i] = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), n elements. x and y may alias.
void gelu_forward(const float* x, float* y, int64_t n, ThreadPool& pool);
// dx[i] = dy[i] * gelu'(x[i]). dx may alias dy (or x).
void gelu_backward(const float* dy, const float* x, float* dx, int64_t n, ThreadPool& pool);

}  // namespace memtrain::cpu
