#include "model/llama.h"

#include "absl/strings/str_cat.h"
#include "core/cpu/elementwise.h"
#include "core/cpu/embedding.h"

namespace memtrain::model {

LlamaModel::LlamaModel(const ModelConfig& cfg, ParamSet& params) : Model(cfg, params) {
  const int64_t C = cfg.n_embd;
  const float eps = static_cast<float>(cfg.norm_eps), std = static_cast<float>(cfg.init_std);
  embed_ = &params.add("model.embed_tokens.weight", {cfg.vocab_size, C}, ParamKind::kEmbedding,
                       ParamInit{ParamInit::kNormal, std});
  blocks_.reserve(cfg.n_layer);
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    const std::string p = absl::StrCat("model.layers.", l);
    blocks_.push_back(Block{RmsNorm(params, p + ".input_layernorm", C, eps), LlamaAttention(params, p + ".self_attn", cfg),
                            RmsNorm(params, p + ".post_attention_layernorm", C, eps), LlamaMlp(params, p + ".mlp", cfg)});
  }
  norm_.emplace(params, "model.norm", C, eps);
  Param* head = embed_;
  if (!cfg.tied()) {
    head = &params.add("lm_head.weight", {cfg.vocab_size, C}, ParamKind::kWeight, ParamInit{ParamInit::kNormal, std});
  }
  head_.emplace("lm_head", head, cfg.vocab_size, C);
}

absl::StatusOr<Tensor> LlamaModel::body_forward(const Tensor& tokens, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  B_ = tokens.dim(0);
  T_ = tokens.dim(1);
  const int64_t N = B_ * T_, C = cfg_.n_embd;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, Tensor::empty({N, C}, DType::kF32, MemCategory::kActivations));
  cpu::embedding_forward(tokens.i32(), embed_->value.f32(), N, C, x.f32(), /*accumulate=*/false, pool);
  MEMTRAIN_RETURN_IF_ERROR(store.save("model.embed_tokens/tokens", tokens));
  for (Block& b : blocks_) {
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor y1, b.input_layernorm.forward(x, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor x2, b.self_attn.forward(y1, B_, T_, store));
    cpu::add_inplace(x2.f32(), x.f32(), N * C, pool);  // residual
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor y2, b.post_attention_layernorm.forward(x2, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor x3, b.mlp.forward(y2, store));
    cpu::add_inplace(x3.f32(), x2.f32(), N * C, pool);
    x = x3;
  }
  return norm_->forward(x, store);
}

absl::Status LlamaModel::body_backward(const Tensor& dh, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = B_ * T_, C = cfg_.n_embd;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, norm_->backward(dh, store));
  for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) {
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dy2, it->mlp.backward(dx, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx2, it->post_attention_layernorm.backward(dy2, store));
    cpu::add_inplace(dx2.f32(), dx.f32(), N * C, pool);
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dy1, it->self_attn.backward(dx2, B_, T_, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx1, it->input_layernorm.backward(dy1, store));
    cpu::add_inplace(dx1.f32(), dx2.f32(), N * C, pool);
    dx = dx1;
  }
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor tokens, store.take("model.embed_tokens/tokens"));
  cpu::embedding_backward(tokens.i32(), dx.f32(), N, C, cfg_.vocab_size, embed_->grad.f32(), pool);
  return absl::OkStatus();
}

int64_t LlamaModel::body_saved_bytes(int64_t B, int64_t T) const {
  const int64_t N = B * T, C = cfg_.n_embd, L = cfg_.n_layer;
  const int64_t stream = 4 * N * C;
  // As GPT-2: four (N, C) tensors per block (residual in, norm out, residual mid, norm out) plus each layer's own.
  const int64_t block = 4 * stream + 2 * RmsNorm::saved_bytes(N) + LlamaAttention::saved_bytes(cfg_, B, T) +
                        LlamaMlp::saved_bytes(cfg_, N);
  return L * block + stream + RmsNorm::saved_bytes(N);
}

int64_t LlamaModel::embedding_params() const { return cfg_.tied() ? 0 : cfg_.vocab_size * cfg_.n_embd; }

}  // namespace memtrain::model
