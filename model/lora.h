// LoRA (Hu et al. 2021; PEFT's layout): a frozen projection y = x W^T gains a trainable low-rank update,
// y += scale * (dropout(x) A^T) B^T with A (r, in), B (out, r) and scale = alpha / r. PEFT initialises A like
// nn.Linear (Kaiming-uniform: U(-1/sqrt(in), 1/sqrt(in))) and B to zero, so training starts from the base model.
// LoRA-FA freezes A after its initialisation and trains B only. The merged weight is W + scale * B A (nn.Linear
// layout (out, in)), or its transpose added to a Conv1D weight (in, out). These are the kernels; the layers that
// carry adapters hold the parameters.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "core/thread_pool.h"
#include "model/params.h"

namespace memtrain::model {

struct LoraAdapter {
  int64_t in = 0, out = 0, r = 0;
  float scale = 1.0f;             // alpha / r
  const float* A = nullptr;       // (r, in)
  const float* B = nullptr;       // (out, r)
  float* dA = nullptr;            // accumulated (+=); nullptr: A is frozen (LoRA-FA)
  float* dB = nullptr;            // accumulated (+=)
};

// h (N, r) = x A^T, kept for the backward; y (N, out) += scale * h B^T.
void lora_forward(const LoraAdapter& a, const float* x, int64_t N, float* h, float* y, ThreadPool& pool);
// From dy (N, out): dB += scale * dy^T h; dh = scale * dy B (N, r, into `dh` scratch); dA += dh^T x; and
// dx (N, in) += dh A when dx is not null.
void lora_backward(const LoraAdapter& a, const float* x, const float* h, const float* dy, int64_t N, float* dh,
                   float* dx, ThreadPool& pool);
// W += scale * B A in W's layout: (out, in), or (in, out) when in_out (GPT-2's Conv1D).
void lora_merge(const LoraAdapter& a, bool in_out, float* W, ThreadPool& pool);

// A fine-tune's frozen projection weight that carries an adapter: W (at `index` of frozen_set()->all()), A
// (trainable, or frozen under LoRA-FA) and B, in registration order.
struct AdaptedProjection {
  Param* W;
  Param* A;
  Param* B;
  size_t index;
};
std::vector<AdaptedProjection> adapted_projections(const ParamSet& tuned);

// PeriodicLoRA's stage end on this rank's parts of `params` (a fine-tune): W += scale * B A into every frozen
// projection weight that carries an adapter, then A drawn from its initialisation again with `seed` and B zeroed, so
// that the model computes the same function and a new low-rank update starts. Any tensor-parallel split works
// locally: a column-parallel projection holds B's rows for its outputs and A whole, a row-parallel one A's columns
// for its inputs and B whole, so the local B A is exactly this rank's part of the product. An NF4 base is an error.
absl::Status restart_adapters(ParamSet& params, uint64_t seed);
// The seed stage `stage` draws its adapters' A from: the run's own for stage 0 (PEFT's initialisation as without
// restarts), a Philox-derived one after.
uint64_t adapter_stage_seed(uint64_t seed, int64_t stage);

// A fine-tuned model's weights as a plain model's: every parameter of `whole` (allocated, no tensor parallelism)
// from `tuned`'s frozen set (fp32, or dequantized NF4) plus, on a projection with an adapter (trainable, or
// LoRA-FA's frozen A), scale * B A. Names must match; errors name the missing tensor.
absl::Status merge_adapters(const ParamSet& tuned, ParamSet& whole);

}  // namespace memtrain::model
