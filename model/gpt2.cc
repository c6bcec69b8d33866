#include "model/gpt2.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/cpu/elementwise.h"
#include "core/cpu/embedding.h"

namespace memtrain::model {

Gpt2Model::Gpt2Model(const ModelConfig& cfg, ParamSet& params, const TensorParallel& tp, const ContextParallel& cp)
    : Model(cfg, params, tp, cp) {
  const int64_t C = cfg.n_embd;
  const float eps = static_cast<float>(cfg.norm_eps), std = static_cast<float>(cfg.init_std);
  wte_.emplace(params, "transformer.wte.weight", cfg.vocab_size, C, std, tp);
  wpe_ = &params.add("transformer.wpe.weight", {cfg.block_size, C}, ParamKind::kEmbedding,
                     ParamInit{ParamInit::kNormal, std}, TpSplit::whole(tp));
  blocks_.reserve(cfg.n_layer);
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    params.begin_unit();
    const std::string p = absl::StrCat("transformer.h.", l);
    blocks_.push_back(Block{LayerNorm(params, p + ".ln_1", C, cfg.bias, eps, tp),
                            Gpt2Attention(params, p + ".attn", cfg, tp, cp),
                            LayerNorm(params, p + ".ln_2", C, cfg.bias, eps, tp), Gpt2Mlp(params, p + ".mlp", cfg, tp)});
  }
  params.begin_unit();
  ln_f_.emplace(params, "transformer.ln_f", C, cfg.bias, eps, tp);
  add_head(wte_->weight());
}

absl::StatusOr<Tensor> Gpt2Model::body_forward(const Tensor& tokens, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  B_ = tokens.dim(0);
  T_ = tokens.dim(1);
  const int64_t N = B_ * T_, C = cfg_.n_embd;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, cp_.positions(B_, T_));
  MEMTRAIN_RETURN_IF_ERROR(acquire(0, parallel::UnitUse::kValues));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, wte_->forward(tokens));
  // This rank's rows (all of them without SP) get their positions.
  cpu::embedding_forward(pos.i32() + tp_.first_local_row(N), wpe_->value.f32(), tp_.local_rows(N), C, x.f32(),
                         /*accumulate=*/true, pool);
  MEMTRAIN_RETURN_IF_ERROR(release(0, parallel::UnitUse::kValues));
  MEMTRAIN_RETURN_IF_ERROR(store.save("transformer.wte/tokens", tokens));
  return blocks_and_norm_forward(blocks_, *ln_f_, std::move(x), B_, T_, store);
}

absl::Status Gpt2Model::body_backward(const Tensor& dh, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = B_ * T_, C = cfg_.n_embd;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, norm_and_blocks_backward(blocks_, *ln_f_, dh, B_, T_, store));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor tokens, store.take("transformer.wte/tokens"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, cp_.positions(B_, T_));
  MEMTRAIN_RETURN_IF_ERROR(acquire(0, parallel::UnitUse::kGrads));
  MEMTRAIN_RETURN_IF_ERROR(wte_->backward(tokens, dx));
  if (!tp_.sequence_parallel) {
    cpu::embedding_backward(pos.i32(), dx.f32(), N, C, cfg_.block_size, wpe_->grad.f32(), pool);
  } else {  // this rank's rows give a part of the position table's gradient
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor part, Tensor::zeros(wpe_->local_shape, DType::kF32, MemCategory::kWorkspace));
    cpu::embedding_backward(pos.i32() + tp_.first_local_row(N), dx.f32(), tp_.local_rows(N), C, cfg_.block_size,
                            part.f32(), pool);
    MEMTRAIN_RETURN_IF_ERROR(tp_.add_grad_sums(part, {{wpe_->grad.f32(), part.numel()}}));
  }
  MEMTRAIN_RETURN_IF_ERROR(release(0, parallel::UnitUse::kGrads));
  return grads_ready(0);
}

int64_t Gpt2Model::body_saved_bytes(int64_t B, int64_t T) const {
  // The blocks, then ln_f's input (the last block's output) and statistics; the tokens were allocated by the caller.
  const int64_t rows = tp_.local_rows(B * T);
  return cfg_.n_layer * Block::saved_bytes(cfg_, B, T, tp_) + 4 * rows * cfg_.n_embd + LayerNorm::saved_bytes(rows);
}

int64_t Gpt2Model::backward_peak_extra_bytes(int64_t B, int64_t T) const {
  return Gpt2Mlp::backward_scratch_bytes(cfg_, B * T, tp_.size) + sequence_parallel_mlp_extra_bytes(B * T) -
         LayerNorm::saved_bytes(tp_.local_rows(B * T));
}

int64_t Gpt2Model::body_workspace_bytes(int64_t B, int64_t T) const {
  // With SP, the embeddings' backward holds the position ids and either the vocabulary-local token ids or this
  // rank's part of the position table's gradient.
  if (!tp_.sequence_parallel) return 0;
  return 4 * B * T + std::max(4 * B * T, 4 * cfg_.block_size * cfg_.n_embd);
}

int64_t Gpt2Model::embedding_params() const {
  return cfg_.block_size * cfg_.n_embd + (cfg_.tied() ? 0 : cfg_.vocab_size * cfg_.n_embd);
}

}  // namespace memtrain::model
