#include "model/gpt2.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/cpu/elementwise.h"
#include "core/cpu/embedding.h"

namespace memtrain::model {

Gpt2Model::Gpt2Model(const ModelConfig& cfg, ParamSet& params, const TensorParallel& tp, const ContextParallel& cp,
                     const PipelineStage& stage)
    : Model(cfg, params, tp, cp, stage) {
  const int64_t C = cfg.n_embd;
  const float eps = static_cast<float>(cfg.norm_eps), std = static_cast<float>(cfg.init_std);
  if (stage_.first) {
    start_unit();
    wte_.emplace(params, "transformer.wte.weight", cfg.vocab_size, C, std, tp);
    wpe_ = &params.add("transformer.wpe.weight", {cfg.block_size, C}, ParamKind::kEmbedding,
                       ParamInit{ParamInit::kNormal, std}, TpSplit::whole(tp));
  }
  blocks_.reserve(num_blocks());
  for (int64_t l = stage_.first_layer; l < stage_.end_layer; ++l) {
    start_unit();
    const std::string p = absl::StrCat("transformer.h.", l);
    blocks_.push_back(Block{LayerNorm(params, p + ".ln_1", C, cfg.bias, eps, tp),
                            Gpt2Attention(params, p + ".attn", cfg, tp, cp),
                            LayerNorm(params, p + ".ln_2", C, cfg.bias, eps, tp), Gpt2Mlp(params, p + ".mlp", cfg, tp)});
  }
  if (stage_.last) {
    start_unit();
    ln_f_.emplace(params, "transformer.ln_f", C, cfg.bias, eps, tp);
    // A last stage without the embeddings holds its own copy of the tied token embedding as the head's weight.
    if (!stage_.first) wte_.emplace(params, "transformer.wte.weight", cfg.vocab_size, C, std, tp);
    add_head(wte_->weight());
  }
}

absl::StatusOr<Tensor> Gpt2Model::body_forward(const Tensor& tokens, const Tensor& x_in, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  B_ = tokens.dim(0);
  T_ = tokens.dim(1);
  LayerNorm* norm = ln_f_ ? &*ln_f_ : nullptr;
  if (!stage_.first) return blocks_and_norm_forward(blocks_, norm, x_in, B_, T_, store);
  const int64_t N = B_ * T_, C = cfg_.n_embd;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, cp_.positions(B_, T_, store));
  MEMTRAIN_RETURN_IF_ERROR(acquire(0, parallel::UnitUse::kValues));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, wte_->forward(tokens));
  // This rank's rows (all of them without SP) get their positions.
  cpu::embedding_forward(pos.i32() + tp_.first_local_row(N), wpe_->value.f32(), tp_.local_rows(N), C, x.f32(),
                         /*accumulate=*/true, pool);
  MEMTRAIN_RETURN_IF_ERROR(release(0, parallel::UnitUse::kValues));
  MEMTRAIN_RETURN_IF_ERROR(store.save("transformer.wte/tokens", tokens));
  return blocks_and_norm_forward(blocks_, norm, std::move(x), B_, T_, store);
}

absl::StatusOr<Tensor> Gpt2Model::body_backward(const Tensor& dh, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = B_ * T_, C = cfg_.n_embd;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx,
                            norm_and_blocks_backward(blocks_, ln_f_ ? &*ln_f_ : nullptr, dh, B_, T_, store));
  if (!stage_.first) return dx;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor tokens, store.take("transformer.wte/tokens"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, cp_.positions(B_, T_, store));
  MEMTRAIN_RETURN_IF_ERROR(acquire(0, parallel::UnitUse::kGrads));
  MEMTRAIN_RETURN_IF_ERROR(wte_->backward(tokens, dx));
  if (wpe_->frozen) {  // fine-tuning with adapters: the position table stays as it is
  } else if (!tp_.sequence_parallel) {
    cpu::embedding_backward(pos.i32(), dx.f32(), N, C, cfg_.block_size, wpe_->grad.f32(), pool);
  } else {  // this rank's rows give a part of the position table's gradient
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor part, Tensor::zeros(wpe_->local_shape, DType::kF32, MemCategory::kWorkspace));
    cpu::embedding_backward(pos.i32() + tp_.first_local_row(N), dx.f32(), tp_.local_rows(N), C, cfg_.block_size,
                            part.f32(), pool);
    MEMTRAIN_RETURN_IF_ERROR(tp_.add_grad_sums(part, {{wpe_->grad.f32(), part.numel()}}));
  }
  MEMTRAIN_RETURN_IF_ERROR(release(0, parallel::UnitUse::kGrads));
  MEMTRAIN_RETURN_IF_ERROR(grads_ready(0));
  return Tensor();
}

int64_t Gpt2Model::body_saved_bytes(int64_t B, int64_t T) const {
  // The blocks, then (last stage) ln_f's input (the last block's output) and statistics; the tokens were allocated
  // by the caller.
  const int64_t rows = tp_.local_rows(B * T);
  const int64_t final_norm = stage_.last ? 4 * rows * cfg_.n_embd + LayerNorm::saved_bytes(rows) : 0;
  return num_blocks() * Block::saved_bytes(cfg_, B, T, tp_) + final_norm;
}

int64_t Gpt2Model::backward_peak_extra_bytes(int64_t B, int64_t T) const {
  return Gpt2Mlp::backward_scratch_bytes(cfg_, B * T, tp_.size) + sequence_parallel_mlp_extra_bytes(B * T) -
         (stage_.last ? LayerNorm::saved_bytes(tp_.local_rows(B * T)) : 0);
}

int64_t Gpt2Model::body_workspace_bytes(int64_t B, int64_t T) const {
  // With SP, the embeddings' backward holds the position ids and either the vocabulary-local token ids or this
  // rank's part of the position table's gradient.
  if (!tp_.sequence_parallel || !stage_.first) return 0;
  return 4 * B * T + std::max(4 * B * T, 4 * cfg_.block_size * cfg_.n_embd);
}

int64_t Gpt2Model::embedding_params() const {
  // Looked up only: the position table, and the token embedding unless this model's head multiplies by it.
  if (!stage_.first) return 0;
  return cfg_.block_size * cfg_.n_embd + (cfg_.tied() && stage_.last ? 0 : cfg_.vocab_size * cfg_.n_embd);
}

}  // namespace memtrain::model
