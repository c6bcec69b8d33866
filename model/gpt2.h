// GPT-2: learned positions, pre-LayerNorm blocks with GELU MLPs, tied token embedding and head (Hugging Face names:
// transformer.wte, transformer.wpe, transformer.h.N.*, transformer.ln_f).
#pragma once

#include <vector>

#include "model/attention.h"
#include "model/block.h"
#include "model/mlp.h"
#include "model/model.h"
#include "model/norm.h"
#include "model/vocab_embedding.h"

namespace memtrain::model {

class Gpt2Model : public Model {
 public:
  Gpt2Model(const ModelConfig& cfg, ParamSet& params, const TensorParallel& tp, const ContextParallel& cp,
            const PipelineStage& stage);

 protected:
  absl::StatusOr<Tensor> body_forward(const Tensor& tokens, const Tensor& x, ActivationStore& store) override;
  absl::StatusOr<Tensor> body_backward(const Tensor& dh, ActivationStore& store) override;
  int64_t body_saved_bytes(int64_t B, int64_t T) const override;
  BlockBytes block_bytes(int64_t B, int64_t T) const override { return block_bytes_of<Block>(B, T); }
  int64_t backward_peak_extra_bytes(int64_t B, int64_t T) const override;
  int64_t body_workspace_bytes(int64_t B, int64_t T) const override;
  int64_t embedding_params() const override;

 private:
  using Block = PreNormBlock<LayerNorm, Gpt2Attention, Gpt2Mlp>;  // ln_1, attn, ln_2, mlp
  std::optional<VocabEmbedding> wte_;  // (V, C), split by vocabulary rows; on the first and the last stage
  Param* wpe_ = nullptr;  // (block_size, C), whole; first stage; not owned
  std::vector<Block> blocks_;
  std::optional<LayerNorm> ln_f_;  // last stage
  int64_t B_ = 0, T_ = 0;  // shape of the forward whose state the store holds
};

}  // namespace memtrain::model
