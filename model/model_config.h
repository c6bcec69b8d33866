// The [model] section: architecture and sizes. It knows nothing of TOML; trainer/config walks `visit`.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace memtrain::model {

struct ModelConfig {
  std::string arch = "gpt2";
  int64_t vocab_size = 256;
  int64_t n_layer = 4;
  int64_t n_head = 4;
  int64_t n_kv_head = 0;   // 0: same as n_head
  int64_t n_embd = 128;
  int64_t block_size = 256;
  int64_t ffn_hidden = 0;  // 0: 4 * n_embd (gpt2); LLaMA's 2/3 * 4 * n_embd rounded up to a multiple of 32 (llama)
  bool bias = true;        // gpt2 linear and norm biases
  std::string tie_embeddings = "auto";  // auto: tied for gpt2, untied for llama
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  double init_std = 0.02;
  std::string from_hf;  // a Hugging Face model directory the architecture and starting weights come from
  // SLTrain (Han et al. 2024): every block projection W = (alpha / r) B A + S, S sparse on a fixed random support.
  int64_t sltrain_rank = 0;  // r; 0: dense projections
  double sltrain_delta = 0.03;
  double sltrain_alpha = 32;

  template <class V> void visit(V& v) {
    v("arch", arch, "gpt2 | llama");
    v("vocab_size", vocab_size, "number of token ids, > 0 (256 for the byte tokenizer)");
    v("n_layer", n_layer, "transformer blocks, > 0");
    v("n_head", n_head, "attention heads, > 0, divides n_embd");
    v("n_kv_head", n_kv_head, "key/value heads for grouped-query attention (llama), divides n_head; 0 = n_head");
    v("n_embd", n_embd, "model width, > 0");
    v("block_size", block_size, "context length in tokens, > 0");
    v("ffn_hidden", ffn_hidden, "MLP hidden width; 0 = the architecture's default");
    v("bias", bias, "gpt2: biases in linear layers and LayerNorm");
    v("tie_embeddings", tie_embeddings, "auto | true | false: share the token embedding with the output head");
    v("norm_eps", norm_eps, "LayerNorm / RMSNorm epsilon, > 0");
    v("rope_theta", rope_theta, "llama: RoPE base, > 0");
    v("init_std", init_std, "std of the normal initialisation, > 0");
    v("sltrain_rank", sltrain_rank,
      "SLTrain: every block projection is (sltrain_alpha / r) B A + S, B (out, r) and A (r, in) low-rank, S sparse on "
      "a fixed uniformly random support; r >= 0, 0 = dense projections");
    v("sltrain_delta", sltrain_delta, "SLTrain: the density of S's support (each weight element kept with this "
                                      "probability), in (0, 1)");
    v("sltrain_alpha", sltrain_alpha, "SLTrain: the low-rank part's scale numerator (scale = alpha / r), > 0");
    v("from_hf", from_hf,
      "a Hugging Face model directory (config.json + safetensors, sharded or not): its config.json replaces the "
      "other model keys and its weights are where training starts (with [lora], the frozen base); \"\" = none");
  }
  absl::Status validate() const;

  // Resolved values.
  bool is_llama() const { return arch == "llama"; }
  int64_t kv_heads() const { return n_kv_head == 0 ? n_head : n_kv_head; }
  int64_t head_dim() const { return n_embd / n_head; }
  int64_t ffn() const;
  bool sltrain() const { return sltrain_rank > 0; }
  bool tied() const { return tie_embeddings == "auto" ? !is_llama() : tie_embeddings == "true"; }
};

}  // namespace memtrain::model
