// The two attention sub-layers: GPT-2's (fused c_attn projection, biases) and LLaMA's (q/k/v/o projections, RoPE,
// grouped-query heads). Both run the blockwise causal kernel core/cpu/attention and save its log-sum-exp; with
// context parallelism, ring attention over the cp group (the tokens are this rank's chunks, see context_parallel.h).
// Tensor parallelism splits the heads: the input projections are column-parallel (a rank computes its heads' q, k
// and v), the output projection row-parallel (summed over tp). With fewer key/value heads than tp ranks, each kv
// head is held by the tp / Hkv ranks whose query heads use it, and their gradients are summed among them.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "model/activation_store.h"
#include "model/chunk_attention.h"
#include "model/context_parallel.h"
#include "model/linear.h"
#include "model/model_config.h"

namespace memtrain::model {

// What recompute_attention leaves out of either attention's saved tensors and its backward recomputes from q, k
// and v: the attention output (N, heads/tp * head_dim) and its log-sum-exps (B, heads/tp, T).
inline int64_t attention_internal_bytes(const ModelConfig& cfg, int64_t B, int64_t T, int tp) {
  return 4 * (B * T * (cfg.n_head / tp) * cfg.head_dim() + B * (cfg.n_head / tp) * T);
}

class Gpt2Attention {
 public:
  // prefix: "transformer.h.3.attn"; registers c_attn (C -> 3C) and c_proj (C -> C), Conv1D layout.
  Gpt2Attention(ParamSet& params, const std::string& prefix, const ModelConfig& cfg, const TensorParallel& tp,
                const ContextParallel& cp = {});
  // x, y: (B*T, C). Saves x, qkv (B*T, 3C/tp), out (B*T, C/tp) and lse (B, H/tp, T).
  absl::StatusOr<Tensor> forward(const Tensor& x, int64_t B, int64_t T, ActivationStore& store) const;
  absl::StatusOr<Tensor> backward(const Tensor& dy, int64_t B, int64_t T, ActivationStore& store);
  // Bytes saved besides x.
  static int64_t saved_bytes(const ModelConfig& cfg, int64_t B, int64_t T, int tp);
  // Bytes a deferring store keeps from backward-input to backward-weight (N rows): c_proj's input (out) and output
  // gradient (N, C), c_attn's input gathered (N, C) and output gradient (N, 3C/tp).
  static int64_t deferred_bytes(const ModelConfig& cfg, int64_t N, int tp) {
    return 4 * N * (4 * (cfg.n_embd / tp) + 2 * cfg.n_embd);
  }
  // What a deferring backward holds at its high-water mark besides its input gradient: the saved tensors and
  // every gradient it allocates (tp.sequence_parallel: also the gathered input and output gradient, and dx
  // reduce-scattered).
  static int64_t deferring_backward_peak_bytes(const ModelConfig& cfg, int64_t B, int64_t T,
                                               const TensorParallel& tp);

  // StreamBP (memory.activations = "stream", stream_block.h), on the chunk's rows of this layer's input y (B*c, C):
  // the keys and values into kv (StreamKeyValues of width kv_width()); the chunk's forward, saving what its
  // backward needs; its backward, which adds into kv.dkv and returns dL/dy of the chunk's rows. Without SP.
  int64_t kv_width() const { return Cl_; }
  absl::Status stream_key_values(const Tensor& y, const SequenceChunk& rows, StreamKeyValues& kv,
                                 const ActivationStore& store) const;
  absl::StatusOr<Tensor> stream_forward(const Tensor& y, const SequenceChunk& rows, const StreamKeyValues& kv,
                                        ActivationStore& store) const;
  absl::StatusOr<Tensor> stream_backward(const Tensor& dy, const SequenceChunk& rows, StreamKeyValues& kv,
                                         ActivationStore& store);
  // With kv.deferred (cp): the key/value projections' backward of the chunk's rows from the reduced kv.dkv, on the
  // chunk's layer input y again; returns their part of dL/dy.
  absl::StatusOr<Tensor> stream_key_value_backward(const Tensor& y, const SequenceChunk& rows,
                                                   const StreamKeyValues& kv, ActivationStore& store);
  const ContextParallel& context_parallel() const { return cp_; }
  // What a chunk's forward saves (besides y) for a (B, c) chunk.
  static int64_t stream_saved_bytes(const ModelConfig& cfg, int64_t B, int64_t c, int tp);
  // The keys and values of N rows (StreamKeyValues::kv, or its gradient).
  static int64_t stream_key_value_bytes(const ModelConfig& cfg, int64_t N, int tp) {
    return 4 * N * 2 * (cfg.n_embd / tp);
  }

 private:
  std::string name_;
  int64_t C_, H_, Cl_;  // H_: this rank's heads; Cl_ = H_ * head dim
  TensorParallel tp_;
  ContextParallel cp_;
  LinearWeights c_attn_, c_proj_;
};

class LlamaAttention {
 public:
  // prefix: "model.layers.3.self_attn"; registers q/k/v/o_proj (nn.Linear layout, no bias).
  LlamaAttention(ParamSet& params, const std::string& prefix, const ModelConfig& cfg, const TensorParallel& tp,
                 const ContextParallel& cp = {});
  // x, y: (B*T, C). Saves x, q (B*T, H*D) and k, v (B*T, Hkv*D) after RoPE, out (B*T, H*D), lse (B, H, T), with
  // this rank's H and Hkv.
  absl::StatusOr<Tensor> forward(const Tensor& x, int64_t B, int64_t T, ActivationStore& store) const;
  absl::StatusOr<Tensor> backward(const Tensor& dy, int64_t B, int64_t T, ActivationStore& store);
  static int64_t saved_bytes(const ModelConfig& cfg, int64_t B, int64_t T, int tp);
  // As Gpt2Attention's: o_proj's input and output gradient, the input gathered (shared by q, k and v) and q's, k's
  // and v's output gradients (k's and v's summed over the sharers of a kv head).
  static int64_t deferred_bytes(const ModelConfig& cfg, int64_t N, int tp) {
    const int64_t D = cfg.n_embd / cfg.n_head;
    return 4 * N * (2 * (cfg.n_head / tp) * D + 2 * local_kv_heads(cfg, tp) * D + 2 * cfg.n_embd);
  }
  // As Gpt2Attention's; with kv heads shared by tp ranks, also the (N, Hkv * D) buffer their sums go through.
  static int64_t deferring_backward_peak_bytes(const ModelConfig& cfg, int64_t B, int64_t T,
                                               const TensorParallel& tp);
  // This rank's key/value heads: Hkv / tp, or 1 when tp ranks share each kv head.
  static int64_t local_kv_heads(const ModelConfig& cfg, int tp);

  // StreamBP's steps, as Gpt2Attention's.
  int64_t kv_width() const { return Hkv_ * D_; }
  absl::Status stream_key_values(const Tensor& y, const SequenceChunk& rows, StreamKeyValues& kv,
                                 const ActivationStore& store) const;
  absl::StatusOr<Tensor> stream_forward(const Tensor& y, const SequenceChunk& rows, const StreamKeyValues& kv,
                                        ActivationStore& store) const;
  absl::StatusOr<Tensor> stream_backward(const Tensor& dy, const SequenceChunk& rows, StreamKeyValues& kv,
                                         ActivationStore& store);
  absl::StatusOr<Tensor> stream_key_value_backward(const Tensor& y, const SequenceChunk& rows,
                                                   const StreamKeyValues& kv, ActivationStore& store);
  const ContextParallel& context_parallel() const { return cp_; }
  static int64_t stream_saved_bytes(const ModelConfig& cfg, int64_t B, int64_t c, int tp);
  static int64_t stream_key_value_bytes(const ModelConfig& cfg, int64_t N, int tp) {
    return 4 * N * 2 * local_kv_heads(cfg, tp) * cfg.head_dim();
  }

 private:
  // Sums d (N, Hkv_ * D_), this rank's key or value gradient, over the ranks that share its kv head.
  absl::StatusOr<Tensor> sum_over_kv_sharers(const Tensor& d) const;
  // The key and value projections' backward from dk, dv (N, Hkv_ * D_, after RoPE's backward): their weight
  // gradients, and dx (N, C, this rank's part of the sum over tp) += their input gradients.
  absl::Status key_value_backward(const Tensor& xf, const Tensor& dk, const Tensor& dv, Tensor& dx,
                                  ActivationStore& store) const;
  // The chunk's rows of kv.dkv through RoPE's backward (positions pos) into key_value_backward.
  absl::Status stream_key_value_gradient(const Tensor& y, const SequenceChunk& rows, const StreamKeyValues& kv,
                                         const Tensor& pos, Tensor& dx, ActivationStore& store) const;

  std::string name_;
  int64_t C_, H_, Hkv_, D_;  // H_, Hkv_: this rank's heads
  int64_t Hkv_global_;
  int kv_sharers_;           // tp ranks holding each kv head (1 unless Hkv < tp)
  double theta_;
  TensorParallel tp_;
  ContextParallel cp_;
  LinearWeights q_, k_, v_, o_;
};

}  // namespace memtrain::model
