#include "model/llama.h"

#include "absl/strings/str_cat.h"
#include "core/cpu/elementwise.h"
#include "core/cpu/embedding.h"

namespace memtrain::model {

LlamaModel::LlamaModel(const ModelConfig& cfg, ParamSet& params, const TensorParallel& tp, const ContextParallel& cp,
                       const PipelineStage& stage)
    : Model(cfg, params, tp, cp, stage) {
  const int64_t C = cfg.n_embd;
  const float eps = static_cast<float>(cfg.norm_eps), std = static_cast<float>(cfg.init_std);
  if (stage_.first) {
    start_unit();
    embed_.emplace(params, "model.embed_tokens.weight", cfg.vocab_size, C, std, tp);
  }
  blocks_.reserve(num_blocks());
  for (int64_t l = stage_.first_layer; l < stage_.end_layer; ++l) {
    start_unit();
    const std::string p = absl::StrCat("model.layers.", l);
    blocks_.push_back(Block{RmsNorm(params, p + ".input_layernorm", C, eps, tp),
                            LlamaAttention(params, p + ".self_attn", cfg, tp, cp),
                            RmsNorm(params, p + ".post_attention_layernorm", C, eps, tp),
                            LlamaMlp(params, p + ".mlp", cfg, tp)});
  }
  if (stage_.last) {
    start_unit();
    norm_.emplace(params, "model.norm", C, eps, tp);
    // A tied head on a last stage without the embeddings holds its own copy of the token embedding.
    if (cfg.tied() && !stage_.first) embed_.emplace(params, "model.embed_tokens.weight", cfg.vocab_size, C, std, tp);
    add_head(embed_ ? embed_->weight() : nullptr);
  }
}

absl::StatusOr<Tensor> LlamaModel::body_forward(const Tensor& tokens, const Tensor& x_in, ActivationStore& store) {
  B_ = tokens.dim(0);
  T_ = tokens.dim(1);
  RmsNorm* norm = norm_ ? &*norm_ : nullptr;
  if (!stage_.first) return blocks_and_norm_forward(blocks_, norm, x_in, B_, T_, store);
  MEMTRAIN_RETURN_IF_ERROR(acquire(0, parallel::UnitUse::kValues));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, embed_->forward(tokens));
  MEMTRAIN_RETURN_IF_ERROR(release(0, parallel::UnitUse::kValues));
  MEMTRAIN_RETURN_IF_ERROR(store.save("model.embed_tokens/tokens", tokens));
  return blocks_and_norm_forward(blocks_, norm, std::move(x), B_, T_, store);
}

absl::StatusOr<Tensor> LlamaModel::body_backward(const Tensor& dh, ActivationStore& store) {
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx,
                            norm_and_blocks_backward(blocks_, norm_ ? &*norm_ : nullptr, dh, B_, T_, store));
  if (!stage_.first) return dx;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor tokens, store.take("model.embed_tokens/tokens"));
  MEMTRAIN_RETURN_IF_ERROR(acquire(0, parallel::UnitUse::kGrads));
  MEMTRAIN_RETURN_IF_ERROR(embed_->backward(tokens, dx));
  MEMTRAIN_RETURN_IF_ERROR(release(0, parallel::UnitUse::kGrads));
  MEMTRAIN_RETURN_IF_ERROR(grads_ready(0));
  return Tensor();
}

int64_t LlamaModel::body_saved_bytes(int64_t B, int64_t T) const {
  // The blocks, then (last stage) the final norm's input and statistics; the tokens were allocated by the caller.
  const int64_t rows = tp_.local_rows(B * T);
  const int64_t final_norm = stage_.last ? 4 * rows * cfg_.n_embd + RmsNorm::saved_bytes(rows) : 0;
  return num_blocks() * Block::saved_bytes(cfg_, B, T, tp_) + final_norm;
}

int64_t LlamaModel::backward_peak_extra_bytes(int64_t B, int64_t T) const {
  return LlamaMlp::backward_scratch_bytes(cfg_, B * T, tp_.size) + sequence_parallel_mlp_extra_bytes(B * T) -
         (stage_.last ? RmsNorm::saved_bytes(tp_.local_rows(B * T)) : 0);
}

int64_t LlamaModel::embedding_params() const {
  // The token embedding when it is only looked up (untied, or tied on a stage without the head).
  return stage_.first && !(cfg_.tied() && stage_.last) ? cfg_.vocab_size * cfg_.n_embd : 0;
}

}  // namespace memtrain::model
