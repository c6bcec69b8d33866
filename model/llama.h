// LLaMA: RoPE, pre-RMSNorm blocks with SwiGLU MLPs, grouped-query attention, untied head by default (Hugging Face
// names: model.embed_tokens, model.layers.N.*, model.norm, lm_head).
#pragma once

#include <vector>

#include "model/attention.h"
#include "model/block.h"
#include "model/mlp.h"
#include "model/model.h"
#include "model/norm.h"
#include "model/vocab_embedding.h"

namespace memtrain::model {

class LlamaModel : public Model {
 public:
  LlamaModel(const ModelConfig& cfg, ParamSet& params, const TensorParallel& tp, const ContextParallel& cp,
             const PipelineStage& stage);

 protected:
  absl::StatusOr<Tensor> body_forward(const Tensor& tokens, const Tensor& x, ActivationStore& store) override;
  absl::StatusOr<Tensor> body_backward(const Tensor& dh, ActivationStore& store) override;
  int64_t body_saved_bytes(int64_t B, int64_t T) const override;
  BlockBytes block_bytes(int64_t B, int64_t T) const override { return block_bytes_of<Block>(B, T); }
  int64_t backward_peak_extra_bytes(int64_t B, int64_t T) const override;
  int64_t embedding_params() const override;

 private:
  // input_layernorm, self_attn, post_attention_layernorm, mlp
  using Block = PreNormBlock<RmsNorm, LlamaAttention, LlamaMlp>;
  std::optional<VocabEmbedding> embed_;  // (V, C), split by vocabulary rows
  std::vector<Block> blocks_;
  std::optional<RmsNorm> norm_;
  int64_t B_ = 0, T_ = 0;  // shape of the forward whose state the store holds
};

}  // namespace memtrain::model
