// The two attention sub-layers: GPT-2's (fused c_attn projection, biases) and LLaMA's (q/k/v/o projections, RoPE,
// grouped-query heads). Both run the blockwise causal kernel core/cpu/attention and save its log-sum-exp.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "model/activation_store.h"
#include "model/linear.h"
#include "model/model_config.h"

namespace memtrain::model {

class Gpt2Attention {
 public:
  // prefix: "transformer.h.3.attn"; registers c_attn (C -> 3C) and c_proj (C -> C), Conv1D layout.
  Gpt2Attention(ParamSet& params, const std::string& prefix, const ModelConfig& cfg);
  // x, y: (B*T, C). Saves x, qkv (B*T, 3C), out (B*T, C) and lse (B, H, T).
  absl::StatusOr<Tensor> forward(const Tensor& x, int64_t B, int64_t T, ActivationStore& store) const;
  absl::StatusOr<Tensor> backward(const Tensor& dy, int64_t B, int64_t T, ActivationStore& store);
  // Bytes saved besides x.
  static int64_t saved_bytes(const ModelConfig& cfg, int64_t B, int64_t T);

 private:
  std::string name_;
  int64_t C_, H_;
  LinearWeights c_attn_, c_proj_;
};

class LlamaAttention {
 public:
  // prefix: "model.layers.3.self_attn"; registers q/k/v/o_proj (nn.Linear layout, no bias).
  LlamaAttention(ParamSet& params, const std::string& prefix, const ModelConfig& cfg);
  // x, y: (B*T, C). Saves x, q (B*T, H*D) and k, v (B*T, Hkv*D) after RoPE, out (B*T, H*D), lse (B, H, T).
  absl::StatusOr<Tensor> forward(const Tensor& x, int64_t B, int64_t T, ActivationStore& store) const;
  absl::StatusOr<Tensor> backward(const Tensor& dy, int64_t B, int64_t T, ActivationStore& store);
  static int64_t saved_bytes(const ModelConfig& cfg, int64_t B, int64_t T);

 private:
  std::string name_;
  int64_t C_, H_, Hkv_, D_;
  double theta_;
  LinearWeights q_, k_, v_, o_;
};

}  // namespace memtrain::model
