// The pre-norm transformer block both architectures use: x + attn(norm1(x)), then + mlp(norm2(.)). GPT-2
// instantiates it with LayerNorm, Gpt2Attention and Gpt2Mlp; LLaMA with RmsNorm, LlamaAttention and LlamaMlp.
#pragma once

#include "absl/status/statusor.h"
#include "core/cpu/elementwise.h"
#include "model/activation_store.h"
#include "model/model_config.h"
#include "model/tensor_parallel.h"

namespace memtrain::model {

template <class Norm, class Attention, class Mlp>
struct PreNormBlock {
  using NormLayer = Norm;
  using AttentionLayer = Attention;
  using MlpLayer = Mlp;

  Norm norm1;
  Attention attn;
  Norm norm2;
  Mlp mlp;

  // x: (B*T, C), saved by norm1; returns the block's output, a new tensor.
  absl::StatusOr<Tensor> forward(const Tensor& x, int64_t B, int64_t T, ActivationStore& store) const {
    ThreadPool& pool = ThreadPool::global();
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor y1, norm1.forward(x, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor x2, attn.forward(y1, B, T, store));
    cpu::add_inplace(x2.f32(), x.f32(), x.numel(), pool);  // residual: x2 = x + attn(norm1(x))
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor y2, norm2.forward(x2, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor x3, mlp.forward(y2, store));
    cpu::add_inplace(x3.f32(), x2.f32(), x.numel(), pool);
    return x3;
  }

  // dy: dL/d(output); returns dL/dx.
  absl::StatusOr<Tensor> backward(const Tensor& dy, int64_t B, int64_t T, ActivationStore& store) {
    ThreadPool& pool = ThreadPool::global();
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dy2, mlp.backward(dy, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx2, norm2.backward(dy2, store));
    cpu::add_inplace(dx2.f32(), dy.f32(), dy.numel(), pool);  // the residual branch
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dy1, attn.backward(dx2, B, T, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, norm1.backward(dy1, store));
    cpu::add_inplace(dx.f32(), dx2.f32(), dy.numel(), pool);
    return dx;
  }

  // Bytes forward leaves saved: the residual input (saved by norm1), norm1's output (by attn), the residual after
  // attention (by norm2), norm2's output (by mlp), each of this rank's rows (1/tp of them with SP), plus what each
  // layer saves besides its input.
  static int64_t saved_bytes(const ModelConfig& cfg, int64_t B, int64_t T, const TensorParallel& tp) {
    const int64_t N = B * T, rows = tp.local_rows(N);
    return 4 * (4 * rows * cfg.n_embd) + 2 * Norm::saved_bytes(rows) + Attention::saved_bytes(cfg, B, T, tp.size) +
           Mlp::saved_bytes(cfg, N, tp.size);
  }
  // The high-water mark of a forward that keeps nothing (evaluation, zo_sgd), in the MLP's second projection: the
  // block's input, norm1's output (alive to the end of forward), the residual after attention, norm2's output and
  // the projection's output (this rank's rows each), the MLP's hidden tensors and, under SP, the gathered input and
  // the partial sum being reduce-scattered (N rows each).
  static int64_t forward_only_peak_bytes(const ModelConfig& cfg, int64_t B, int64_t T, const TensorParallel& tp) {
    const int64_t N = B * T, rows = tp.local_rows(N);
    return 4 * cfg.n_embd * (5 * rows + (tp.sequence_parallel ? 2 * N : 0)) + Mlp::forward_hidden_bytes(cfg, N, tp.size);
  }
  // Bytes a deferring store (zero-bubble pipeline) keeps after backward until the weight gradients run: the inputs
  // and output gradients of the projections.
  static int64_t deferred_bytes(const ModelConfig& cfg, int64_t B, int64_t T, const TensorParallel& tp) {
    return Attention::deferred_bytes(cfg, B * T, tp.size) + Mlp::deferred_bytes(cfg, B * T, tp.size);
  }
  // A deferring backward's high-water mark in attention: the MLP's deferred tensors, norm1's saved input and
  // statistics, the gradients dy2 (the MLP's) and dx2 (norm2's, attention's input), with SP also the block's
  // incoming dy, and what attention holds (Attention::deferring_backward_peak_bytes).
  static int64_t deferring_attention_peak_bytes(const ModelConfig& cfg, int64_t B, int64_t T,
                                                const TensorParallel& tp) {
    const int64_t N = B * T, rows = tp.local_rows(N);
    return Mlp::deferred_bytes(cfg, N, tp.size) + 4 * rows * cfg.n_embd * (tp.sequence_parallel ? 4 : 3) +
           Norm::saved_bytes(rows) + Attention::deferring_backward_peak_bytes(cfg, B, T, tp);
  }
  // A deferring MLP backward keeps its activation's gradient apart from the activation, which the deferred weight
  // gradient reads: (N, F/tp) more than otherwise.
  static int64_t deferring_mlp_extra_bytes(const ModelConfig& cfg, int64_t B, int64_t T, const TensorParallel& tp) {
    return 4 * B * T * (cfg.ffn() / tp.size);
  }
};

}  // namespace memtrain::model
