// Dense projections for both weight layouts: nn.Linear stores W as (out, in) (LLaMA), GPT-2's Conv1D as (in, out).
// These are helpers of the layers that own them, not layers: they save nothing.
#pragma once

#include "core/thread_pool.h"
#include "model/params.h"

namespace memtrain::model {

struct LinearWeights {
  Param* weight = nullptr;  // not owned: the ParamSet outlives layers
  Param* bias = nullptr;    // optional
  bool in_out = false;      // true: Conv1D layout (in, out)
  int64_t in = 0, out = 0;
};

// Registers `prefix.weight` (and `prefix.bias`) in `params`.
LinearWeights make_linear(ParamSet& params, const std::string& prefix, int64_t in, int64_t out, bool bias,
                          bool in_out, float init_std);

// y (N, out) = x (N, in) W^T + b.
void linear_forward(const LinearWeights& w, const float* x, int64_t N, float* y, ThreadPool& pool);
// dW += dy^T x (in W's layout), db += column sums of dy; dx (N, in) = dy W (+= when accumulate_dx), skipped when
// dx is nullptr. dx may alias x: the weight gradient reads x before dx is written.
void linear_backward(const LinearWeights& w, const float* x, const float* dy, int64_t N, float* dx, ThreadPool& pool,
                     bool accumulate_dx = false);

}  // namespace memtrain::model
