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
};

}  // namespace memtrain::model
