// The two feed-forward sub-layers: GPT-2's (c_fc, GELU, c_proj) and LLaMA's SwiGLU (gate, up, down). Each saves
// its input and the pre-activation(s) and recomputes the cheap activation in backward instead of saving it.
// Tensor parallelism splits the hidden width F: the input projections are column-parallel, the output projection
// row-parallel.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "model/activation_store.h"
#include "model/linear.h"
#include "model/model_config.h"

namespace memtrain::model {

class Gpt2Mlp {
 public:
  // prefix: "transformer.h.3.mlp"; registers c_fc (C -> F) and c_proj (F -> C), Conv1D layout.
  Gpt2Mlp(ParamSet& params, const std::string& prefix, const ModelConfig& cfg, const TensorParallel& tp);
  // x, y: (N, C). Saves x and h = c_fc(x) (N, F/tp).
  absl::StatusOr<Tensor> forward(const Tensor& x, ActivationStore& store) const;
  absl::StatusOr<Tensor> backward(const Tensor& dy, ActivationStore& store);
  static int64_t saved_bytes(const ModelConfig& cfg, int64_t N, int tp) { return 4 * N * (cfg.ffn() / tp); }
  // What backward allocates at its high-water mark: the recomputed GELU (N, F/tp), reused for its gradient, and dx.
  static int64_t backward_scratch_bytes(const ModelConfig& cfg, int64_t N, int tp) {
    return 4 * N * (cfg.ffn() / tp + cfg.n_embd);
  }
  // Bytes a deferring store keeps from backward-input to backward-weight: c_proj's input (the recomputed GELU) and
  // output gradient (N, C), c_fc's input gathered (N, C) and output gradient (N, F/tp).
  static int64_t deferred_bytes(const ModelConfig& cfg, int64_t N, int tp) {
    return 4 * N * (2 * (cfg.ffn() / tp) + 2 * cfg.n_embd);
  }
  // What a forward that keeps nothing holds in c_proj, besides its input and output: h and the GELU (N, F/tp).
  static int64_t forward_hidden_bytes(const ModelConfig& cfg, int64_t N, int tp) { return 2 * 4 * N * (cfg.ffn() / tp); }

 private:
  std::string name_;
  int64_t C_, F_;  // F_: this rank's hidden width
  TensorParallel tp_;
  LinearWeights c_fc_, c_proj_;
};

class LlamaMlp {
 public:
  // prefix: "model.layers.3.mlp"; registers gate_proj, up_proj (C -> F) and down_proj (F -> C).
  LlamaMlp(ParamSet& params, const std::string& prefix, const ModelConfig& cfg, const TensorParallel& tp);
  // x, y: (N, C). Saves x, gate (N, F/tp) and up (N, F/tp).
  absl::StatusOr<Tensor> forward(const Tensor& x, ActivationStore& store) const;
  absl::StatusOr<Tensor> backward(const Tensor& dy, ActivationStore& store);
  static int64_t saved_bytes(const ModelConfig& cfg, int64_t N, int tp) { return 2 * 4 * N * (cfg.ffn() / tp); }
  // The recomputed SwiGLU output (reused for its gradient), dgate, dup (each N x F/tp) and dx.
  static int64_t backward_scratch_bytes(const ModelConfig& cfg, int64_t N, int tp) {
    return 4 * N * (3 * (cfg.ffn() / tp) + cfg.n_embd);
  }
  // As Gpt2Mlp's: down's input (the recomputed SwiGLU) and output gradient, the input gathered (shared by gate and
  // up) and their output gradients.
  static int64_t deferred_bytes(const ModelConfig& cfg, int64_t N, int tp) {
    return 4 * N * (3 * (cfg.ffn() / tp) + 2 * cfg.n_embd);
  }
  // As Gpt2Mlp's: gate, up and the SwiGLU (N, F/tp).
  static int64_t forward_hidden_bytes(const ModelConfig& cfg, int64_t N, int tp) { return 3 * 4 * N * (cfg.ffn() / tp); }

 private:
  std::string name_;
  int64_t C_, F_;
  TensorParallel tp_;
  LinearWeights gate_, up_, down_;
};

}  // namespace memtrain::model
