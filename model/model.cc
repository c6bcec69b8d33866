#include "model/model.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "model/gpt2.h"
#include "model/llama.h"

namespace memtrain::model {

absl::StatusOr<std::unique_ptr<Model>> Model::create(const ModelConfig& cfg, ParamSet& params,
                                                     const TensorParallel& tp) {
  MEMTRAIN_RETURN_IF_ERROR(cfg.validate());
  if (std::string why = tensor_parallel_mismatch(cfg, tp.size); !why.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("parallel.tp = ", tp.size, ": ", why));
  }
  if (cfg.is_llama()) return std::unique_ptr<Model>(new LlamaModel(cfg, params, tp));
  return std::unique_ptr<Model>(new Gpt2Model(cfg, params, tp));
}

std::string Model::tensor_parallel_mismatch(const ModelConfig& cfg, int tp) {
  const int64_t kv = cfg.kv_heads();
  if (cfg.n_head % tp != 0) return absl::StrCat("does not divide model.n_head (", cfg.n_head, ")");
  if (kv % tp != 0 && tp % kv != 0)
    return absl::StrCat("and the key/value heads (", kv, ") must divide one another");
  if (cfg.ffn() % tp != 0) return absl::StrCat("does not divide the MLP width (", cfg.ffn(), ")");
  if (cfg.vocab_size < tp)
    return absl::StrCat("exceeds model.vocab_size (", cfg.vocab_size, "): a rank would hold no vocabulary rows");
  return "";
}

void Model::add_head(Param* tied) {
  const IndexRange vocab = tp_.part(cfg_.vocab_size);
  Param* weight = tied;
  if (!cfg_.tied()) {
    weight = &params_.add("lm_head.weight", {cfg_.vocab_size, cfg_.n_embd}, ParamKind::kWeight,
                          ParamInit{ParamInit::kNormal, static_cast<float>(cfg_.init_std)},
                          TpSplit::along(0, {vocab}));
  }
  head_.emplace("lm_head", weight, cfg_.vocab_size, cfg_.n_embd, vocab, tp_);
}

absl::Status Model::check_tokens(const Tensor& tokens) const {
  MEMTRAIN_CHECK(tokens.ndim() == 2 && tokens.dtype() == DType::kI32);
  if (tokens.dim(1) > cfg_.block_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence of ", tokens.dim(1), " tokens exceeds model.block_size ", cfg_.block_size));
  }
  for (int64_t i = 0; i < tokens.numel(); ++i) {
    const int32_t t = tokens.i32()[i];
    if (t < 0 || t >= cfg_.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", t, " outside [0, model.vocab_size=", cfg_.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<double> Model::forward(const Tensor& tokens, const Tensor& targets, float grad_scale,
                                       ActivationStore& store) {
  MEMTRAIN_RETURN_IF_ERROR(check_tokens(tokens));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor h, body_forward(tokens, store));
  // In training the head also adds its weight gradient here.
  const parallel::UnitUse use = store.keeping() ? parallel::UnitUse::kValuesAndGrads : parallel::UnitUse::kValues;
  MEMTRAIN_RETURN_IF_ERROR(acquire(head_unit(), use));
  MEMTRAIN_ASSIGN_OR_RETURN(double loss, head_->forward(h, targets.view({targets.numel()}), grad_scale, store));
  MEMTRAIN_RETURN_IF_ERROR(release(head_unit(), use));
  return loss;
}

absl::Status Model::backward(ActivationStore& store) {
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dh, head_->backward(store));
  return body_backward(dh, store);
}

absl::StatusOr<Tensor> Model::last_logits(const Tensor& tokens) {
  MEMTRAIN_RETURN_IF_ERROR(check_tokens(tokens));
  ActivationStore discard(/*keep=*/false);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor h_rows, body_forward(tokens, discard));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor h, tp_.gather_rows(h_rows));
  const int64_t B = tokens.dim(0), T = tokens.dim(1), C = cfg_.n_embd;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor last, Tensor::empty({B, C}, DType::kF32, MemCategory::kActivations));
  for (int64_t b = 0; b < B; ++b)
    std::copy_n(h.f32() + ((b + 1) * T - 1) * C, C, last.f32() + b * C);
  MEMTRAIN_RETURN_IF_ERROR(acquire(head_unit(), parallel::UnitUse::kValues));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor logits, head_->logits(last));
  MEMTRAIN_RETURN_IF_ERROR(release(head_unit(), parallel::UnitUse::kValues));
  return logits;
}

int64_t Model::predicted_activation_bytes(int64_t B, int64_t T) const {
  return body_saved_bytes(B, T) + LmHead::saved_bytes(tp_.local_rows(B * T), cfg_.n_embd);
}

int64_t Model::predicted_peak_activation_bytes(int64_t B, int64_t T) const {
  return predicted_activation_bytes(B, T) + backward_peak_extra_bytes(B, T);
}

int64_t Model::predicted_workspace_bytes(int64_t B, int64_t T) const {
  return std::max(head_->workspace_bytes(B * T), body_workspace_bytes(B, T));
}

double Model::flops_per_token(int64_t T) const {
  const double matmul_params = static_cast<double>(params_.numel() - embedding_params());
  return 6.0 * matmul_params + 12.0 * cfg_.n_layer * cfg_.n_embd * T;
}

}  // namespace memtrain::model
