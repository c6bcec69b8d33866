#include "model/gpt2.h"

#include "absl/strings/str_cat.h"
#include "core/cpu/elementwise.h"
#include "core/cpu/embedding.h"
#include "model/positions.h"

namespace memtrain::model {

Gpt2Model::Gpt2Model(const ModelConfig& cfg, ParamSet& params) : Model(cfg, params) {
  const int64_t C = cfg.n_embd;
  const float eps = static_cast<float>(cfg.norm_eps), std = static_cast<float>(cfg.init_std);
  wte_ = &params.add("transformer.wte.weight", {cfg.vocab_size, C}, ParamKind::kEmbedding, ParamInit{ParamInit::kNormal, std});
  wpe_ = &params.add("transformer.wpe.weight", {cfg.block_size, C}, ParamKind::kEmbedding, ParamInit{ParamInit::kNormal, std});
  blocks_.reserve(cfg.n_layer);
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    const std::string p = absl::StrCat("transformer.h.", l);
    blocks_.push_back(Block{LayerNorm(params, p + ".ln_1", C, cfg.bias, eps), Gpt2Attention(params, p + ".attn", cfg),
                            LayerNorm(params, p + ".ln_2", C, cfg.bias, eps), Gpt2Mlp(params, p + ".mlp", cfg)});
  }
  ln_f_.emplace(params, "transformer.ln_f", C, cfg.bias, eps);
  Param* head = wte_;
  if (!cfg.tied()) {
    head = &params.add("lm_head.weight", {cfg.vocab_size, C}, ParamKind::kWeight, ParamInit{ParamInit::kNormal, std});
  }
  head_.emplace("lm_head", head, cfg.vocab_size, C);
}

absl::StatusOr<Tensor> Gpt2Model::body_forward(const Tensor& tokens, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  B_ = tokens.dim(0);
  T_ = tokens.dim(1);
  const int64_t N = B_ * T_, C = cfg_.n_embd;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, token_positions(B_, T_));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, Tensor::empty({N, C}, DType::kF32, MemCategory::kActivations));
  cpu::embedding_forward(tokens.i32(), wte_->value.f32(), N, C, x.f32(), /*accumulate=*/false, pool);
  cpu::embedding_forward(pos.i32(), wpe_->value.f32(), N, C, x.f32(), /*accumulate=*/true, pool);
  MEMTRAIN_RETURN_IF_ERROR(store.save("transformer.wte/tokens", tokens));
  for (Block& b : blocks_) {
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor y1, b.ln_1.forward(x, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor x2, b.attn.forward(y1, B_, T_, store));
    cpu::add_inplace(x2.f32(), x.f32(), N * C, pool);  // residual: x2 = x + attn(ln_1(x))
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor y2, b.ln_2.forward(x2, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor x3, b.mlp.forward(y2, store));
    cpu::add_inplace(x3.f32(), x2.f32(), N * C, pool);
    x = x3;
  }
  return ln_f_->forward(x, store);
}

absl::Status Gpt2Model::body_backward(const Tensor& dh, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = B_ * T_, C = cfg_.n_embd;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, ln_f_->backward(dh, store));
  for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) {
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dy2, it->mlp.backward(dx, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx2, it->ln_2.backward(dy2, store));
    cpu::add_inplace(dx2.f32(), dx.f32(), N * C, pool);  // the residual branch
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dy1, it->attn.backward(dx2, B_, T_, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx1, it->ln_1.backward(dy1, store));
    cpu::add_inplace(dx1.f32(), dx2.f32(), N * C, pool);
    dx = dx1;
  }
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor tokens, store.take("transformer.wte/tokens"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, token_positions(B_, T_));
  cpu::embedding_backward(tokens.i32(), dx.f32(), N, C, cfg_.vocab_size, wte_->grad.f32(), pool);
  cpu::embedding_backward(pos.i32(), dx.f32(), N, C, cfg_.block_size, wpe_->grad.f32(), pool);
  return absl::OkStatus();
}

int64_t Gpt2Model::body_saved_bytes(int64_t B, int64_t T) const {
  const int64_t N = B * T, C = cfg_.n_embd, L = cfg_.n_layer;
  const int64_t stream = 4 * N * C;  // one (N, C) fp32 tensor
  // Per block: the residual input (saved by ln_1), ln_1's output (by attn), the residual after attention (by ln_2),
  // ln_2's output (by mlp), plus what each layer saves besides its input. Then ln_f's input and statistics. The
  // tokens were allocated by the caller.
  const int64_t block = 4 * stream + 2 * LayerNorm::saved_bytes(N) + Gpt2Attention::saved_bytes(cfg_, B, T) +
                        Gpt2Mlp::saved_bytes(cfg_, N);
  return L * block + stream + LayerNorm::saved_bytes(N);
}

int64_t Gpt2Model::embedding_params() const {
  return cfg_.block_size * cfg_.n_embd + (cfg_.tied() ? 0 : cfg_.vocab_size * cfg_.n_embd);
}

}  // namespace memtrain::model
