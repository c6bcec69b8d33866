// Dense projections for both weight layouts: nn.Linear stores W as (out, in) (LLaMA), GPT-2's Conv1D as (in, out).
// Under tensor parallelism a projection is column-parallel (this rank computes some of the outputs from the whole
// input) or row-parallel (a partial sum of every output from some of the inputs; row_parallel_forward sums it over
// tp before adding the bias). These are helpers of the layers that own them, not layers: they save nothing.
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "core/thread_pool.h"
#include "model/activation_store.h"
#include "model/params.h"
#include "model/sltrain.h"
#include "model/tensor_parallel.h"

namespace memtrain::model {

struct LinearSplit {
  enum Kind : uint8_t { kColumn, kRow } kind = kColumn;
  // The global output (kColumn) or input (kRow) features this rank holds, in local order; empty = all of them.
  std::vector<IndexRange> ranges;
  bool primary = true;  // TpSplit::primary of the split weight (false on all but one rank sharing a kv head)

  static LinearSplit column(std::vector<IndexRange> r, bool primary = true) { return {kColumn, std::move(r), primary}; }
  static LinearSplit row(IndexRange r) { return {kRow, {r}, true}; }
};

// A LoRA adapter on a projection (model/lora.h): A (r, in) and B (out, r), split as the weight is: a
// column-parallel projection splits B's rows (A whole), a row-parallel one A's columns (B whole). The (N, r)
// intermediates are summed over tp where a rank holds part of them.
struct LoraWeights {
  Param* A = nullptr;  // null: no adapter
  Param* B = nullptr;
  float scale = 0;     // alpha / r
  bool row = false;    // on a row-parallel projection
  TensorParallel tp;
  float dropout = 0;   // on the adapter's input, in training (ActivationStore::dropout)
  int64_t in_global = 0, in_offset = 0;  // the input features this rank's x holds: [in_offset, + in) of in_global
};

struct LinearWeights {
  Param* weight = nullptr;  // not owned (the ParamSet outlives layers); frozen under LoRA (maybe NF4); SLTrain: null
  SparseWeight sparse;      // SLTrain: W = scale * B A (`lora`, trainable) + S (these values); else values null
  Param* bias = nullptr;    // optional
  bool in_out = false;      // true: Conv1D layout (in, out)
  int64_t in = 0, out = 0;  // this rank's sizes
  LoraWeights lora;
};

// Registers `prefix.weight` (global (out, in) or (in, out)) and `prefix.bias` (out) in `params`, split as `split`
// says; a row-parallel bias is whole on every rank. When params fine-tunes (ParamSet::fine_tune) a projection
// whose last name component is a LoRA target, also `prefix.lora_A.weight` and `prefix.lora_B.weight` (PEFT's
// names below base_model.model.). Under SLTrain (ParamSet::sltrain) the weight is `prefix.sltrain.values` (sparse)
// and the low-rank `prefix.sltrain.A` (r, in) and `prefix.sltrain.B` (out, r), all trainable, instead.
LinearWeights make_linear(ParamSet& params, const std::string& prefix, int64_t in, int64_t out, bool bias,
                          bool in_out, float init_std, const TensorParallel& tp, LinearSplit split = {});

// y (N, out) = x (N, in) W^T + b (+ the adapter's scale * x A^T B^T).
// `store` gives the adapter's dropout stream (training only).
absl::Status linear_forward(const LinearWeights& w, const float* x, int64_t N, float* y, ThreadPool& pool,
                            const ActivationStore& store);
// y = sum over tp of x W^T, then + b: the output of a row-parallel projection, the same on every tp rank: (N, out),
// or with sequence parallelism this rank's rows (N/tp, out) of it. (Its backward: linear_backward with dy gathered
// to all N rows, which makes the bias gradient whole on every rank.)
absl::StatusOr<Tensor> row_parallel_forward(const LinearWeights& w, const float* x, int64_t N, ThreadPool& pool,
                                            const TensorParallel& tp, const ActivationStore& store);
// dW += dy^T x (in W's layout) and db += column sums of dy (each unless frozen), an adapter's dA and dB, through
// store.weight_grad (deferred by a zero-bubble
// pipeline, with x and dy kept alive until then); dx (N, in) = dy W at once (+= when accumulate_dx), skipped when
// dx is nullptr. dx may alias x only when the store does not defer. (A column-parallel dx is this rank's part of a
// sum over tp: the layer sums it once for all its projections.)
absl::Status linear_backward(const LinearWeights& w, const Tensor& x, const Tensor& dy, int64_t N, float* dx,
                             ActivationStore& store, bool accumulate_dx = false);
// The input half of linear_backward alone (with an adapter, dx also gets scale * dy B A).
absl::Status linear_backward_input(const LinearWeights& w, const float* dy, int64_t N, float* dx, ThreadPool& pool,
                                   bool accumulate_dx, const ActivationStore& store);

}  // namespace memtrain::model
