#include "model/llama.h"

#include "absl/strings/str_cat.h"
#include "core/cpu/elementwise.h"
#include "core/cpu/embedding.h"

namespace memtrain::model {

LlamaModel::LlamaModel(const ModelConfig& cfg, ParamSet& params, const TensorParallel& tp, const ContextParallel& cp)
    : Model(cfg, params, tp, cp) {
  const int64_t C = cfg.n_embd;
  const float eps = static_cast<float>(cfg.norm_eps);
  embed_.emplace(params, "model.embed_tokens.weight", cfg.vocab_size, C, static_cast<float>(cfg.init_std), tp);
  blocks_.reserve(cfg.n_layer);
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    params.begin_unit();
    const std::string p = absl::StrCat("model.layers.", l);
    blocks_.push_back(Block{RmsNorm(params, p + ".input_layernorm", C, eps, tp),
                            LlamaAttention(params, p + ".self_attn", cfg, tp, cp),
                            RmsNorm(params, p + ".post_attention_layernorm", C, eps, tp),
                            LlamaMlp(params, p + ".mlp", cfg, tp)});
  }
  params.begin_unit();
  norm_.emplace(params, "model.norm", C, eps, tp);
  add_head(embed_->weight());
}

absl::StatusOr<Tensor> LlamaModel::body_forward(const Tensor& tokens, ActivationStore& store) {
  B_ = tokens.dim(0);
  T_ = tokens.dim(1);
  MEMTRAIN_RETURN_IF_ERROR(acquire(0, parallel::UnitUse::kValues));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, embed_->forward(tokens));
  MEMTRAIN_RETURN_IF_ERROR(release(0, parallel::UnitUse::kValues));
  MEMTRAIN_RETURN_IF_ERROR(store.save("model.embed_tokens/tokens", tokens));
  return blocks_and_norm_forward(blocks_, *norm_, std::move(x), B_, T_, store);
}

absl::Status LlamaModel::body_backward(const Tensor& dh, ActivationStore& store) {
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, norm_and_blocks_backward(blocks_, *norm_, dh, B_, T_, store));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor tokens, store.take("model.embed_tokens/tokens"));
  MEMTRAIN_RETURN_IF_ERROR(acquire(0, parallel::UnitUse::kGrads));
  MEMTRAIN_RETURN_IF_ERROR(embed_->backward(tokens, dx));
  MEMTRAIN_RETURN_IF_ERROR(release(0, parallel::UnitUse::kGrads));
  return grads_ready(0);
}

int64_t LlamaModel::body_saved_bytes(int64_t B, int64_t T) const {
  // The blocks, then the final norm's input and statistics; the tokens were allocated by the caller.
  const int64_t rows = tp_.local_rows(B * T);
  return cfg_.n_layer * Block::saved_bytes(cfg_, B, T, tp_) + 4 * rows * cfg_.n_embd + RmsNorm::saved_bytes(rows);
}

int64_t LlamaModel::backward_peak_extra_bytes(int64_t B, int64_t T) const {
  return LlamaMlp::backward_scratch_bytes(cfg_, B * T, tp_.size) + sequence_parallel_mlp_extra_bytes(B * T) -
         RmsNorm::saved_bytes(tp_.local_rows(B * T));
}

int64_t LlamaModel::embedding_params() const { return cfg_.tied() ? 0 : cfg_.vocab_size * cfg_.n_embd; }

}  // namespace memtrain::model
