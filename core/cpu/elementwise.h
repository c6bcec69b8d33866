// Small fp32 elementwise and bias kernels (residual adds, loss scaling, linear-layer bias) and the squared-norm
// reduction behind gradient clipping.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace memtrain::cpu {

// a, b, y: n elements. y = a + b; y may alias a or b.
void add(const float* a, const float* b, float* y, int64_t n, ThreadPool& pool);
// y += x, n elements.
void add_inplace(float* y, const float* x, int64_t n, ThreadPool& pool);
// x *= s, n elements.
void scale_inplace(float* x, float s, int64_t n, ThreadPool& pool);
// y: (rows, C), bias: (C). y[r, :] += bias.
void add_bias(float* y, const float* bias, int64_t rows, int64_t C, ThreadPool& pool);
// dy: (rows, C). dbias (C) += column sums of dy; independent of the thread count.
void bias_backward(const float* dy, int64_t rows, int64_t C, float* dbias, ThreadPool& pool);
// Sum of x[i]^2 over n elements, in double: fixed chunks (a function of n only) summed in order, so the result is
// the same with any thread count.
double sum_squares(const float* x, int64_t n, ThreadPool& pool);
// out[i] = the sum of squares of block i: x[i*block, (i+1)*block), n a multiple of block; each block in one
// thread, so a block's value depends only on its elements (sharded gradient norms sum the same blocks).
void block_sum_squares(const float* x, int64_t n, int64_t block, double* out, ThreadPool& pool);

}  // namespace memtrain::cpu
