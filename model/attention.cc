#include "model/attention.h"

#include <cmath>

#include "core/cpu/attention.h"
#include "core/cpu/rope.h"
#include "model/positions.h"

namespace memtrain::model {
namespace {
float proj_std(const ModelConfig& cfg) {
  // GPT-2 scales the residual projections by 1/sqrt(2 * n_layer) (nanoGPT's c_proj init).
  return static_cast<float>(cfg.init_std / std::sqrt(2.0 * cfg.n_layer));
}
absl::StatusOr<Tensor> act(Shape shape) { return Tensor::empty(std::move(shape), DType::kF32, MemCategory::kActivations); }
}  // namespace

Gpt2Attention::Gpt2Attention(ParamSet& params, const std::string& prefix, const ModelConfig& cfg)
    : name_(prefix), C_(cfg.n_embd), H_(cfg.n_head) {
  const float std = static_cast<float>(cfg.init_std);
  c_attn_ = make_linear(params, prefix + ".c_attn", C_, 3 * C_, cfg.bias, /*in_out=*/true, std);
  c_proj_ = make_linear(params, prefix + ".c_proj", C_, C_, cfg.bias, /*in_out=*/true, proj_std(cfg));
}

int64_t Gpt2Attention::saved_bytes(const ModelConfig& cfg, int64_t B, int64_t T) {
  return 4 * (B * T * 3 * cfg.n_embd + B * T * cfg.n_embd + B * cfg.n_head * T);
}

absl::StatusOr<Tensor> Gpt2Attention::forward(const Tensor& x, int64_t B, int64_t T, ActivationStore& store) const {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = B * T, D = C_ / H_;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor qkv, act({N, 3 * C_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor out, act({N, C_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor lse, act({B, H_, T}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor y, act({N, C_}));
  linear_forward(c_attn_, x.f32(), N, qkv.f32(), pool);
  const float* q = qkv.f32();
  cpu::attention_forward(q, 3 * C_, q + C_, 3 * C_, q + 2 * C_, 3 * C_, B, T, H_, H_, D, out.f32(), C_, lse.f32(), pool);
  linear_forward(c_proj_, out.f32(), N, y.f32(), pool);
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/x", x));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/qkv", qkv));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/out", out));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/lse", lse));
  return y;
}

absl::StatusOr<Tensor> Gpt2Attention::backward(const Tensor& dy, int64_t B, int64_t T, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = B * T, D = C_ / H_;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, store.take(name_ + "/x"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor qkv, store.take(name_ + "/qkv"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor out, store.take(name_ + "/out"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor lse, store.take(name_ + "/lse"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dout, act({N, C_}));
  linear_backward(c_proj_, out.f32(), dy.f32(), N, dout.f32(), pool);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dqkv, act({N, 3 * C_}));
  const float* q = qkv.f32();
  float* dq = dqkv.f32();
  cpu::attention_backward(dout.f32(), C_, q, 3 * C_, q + C_, 3 * C_, q + 2 * C_, 3 * C_, out.f32(), C_, lse.f32(), B, T,
                          H_, H_, D, dq, 3 * C_, dq + C_, 3 * C_, dq + 2 * C_, 3 * C_, pool);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, act({N, C_}));
  linear_backward(c_attn_, x.f32(), dqkv.f32(), N, dx.f32(), pool);
  return dx;
}

LlamaAttention::LlamaAttention(ParamSet& params, const std::string& prefix, const ModelConfig& cfg)
    : name_(prefix), C_(cfg.n_embd), H_(cfg.n_head), Hkv_(cfg.kv_heads()), D_(cfg.head_dim()), theta_(cfg.rope_theta) {
  const float std = static_cast<float>(cfg.init_std);
  q_ = make_linear(params, prefix + ".q_proj", C_, H_ * D_, false, false, std);
  k_ = make_linear(params, prefix + ".k_proj", C_, Hkv_ * D_, false, false, std);
  v_ = make_linear(params, prefix + ".v_proj", C_, Hkv_ * D_, false, false, std);
  o_ = make_linear(params, prefix + ".o_proj", H_ * D_, C_, false, false, std);
}

int64_t LlamaAttention::saved_bytes(const ModelConfig& cfg, int64_t B, int64_t T) {
  const int64_t N = B * T, qd = cfg.n_head * cfg.head_dim(), kvd = cfg.kv_heads() * cfg.head_dim();
  return 4 * (2 * N * qd + 2 * N * kvd + B * cfg.n_head * T);
}

absl::StatusOr<Tensor> LlamaAttention::forward(const Tensor& x, int64_t B, int64_t T, ActivationStore& store) const {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = B * T;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor q, act({N, H_ * D_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor k, act({N, Hkv_ * D_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor v, act({N, Hkv_ * D_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor out, act({N, H_ * D_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor lse, act({B, H_, T}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor y, act({N, C_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, token_positions(B, T));
  linear_forward(q_, x.f32(), N, q.f32(), pool);
  linear_forward(k_, x.f32(), N, k.f32(), pool);
  linear_forward(v_, x.f32(), N, v.f32(), pool);
  cpu::rope_forward(q.f32(), N, H_, D_, H_ * D_, pos.i32(), theta_, pool);
  cpu::rope_forward(k.f32(), N, Hkv_, D_, Hkv_ * D_, pos.i32(), theta_, pool);
  cpu::attention_forward(q.f32(), H_ * D_, k.f32(), Hkv_ * D_, v.f32(), Hkv_ * D_, B, T, H_, Hkv_, D_, out.f32(),
                         H_ * D_, lse.f32(), pool);
  linear_forward(o_, out.f32(), N, y.f32(), pool);
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/x", x));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/q", q));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/k", k));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/v", v));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/out", out));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/lse", lse));
  return y;
}

absl::StatusOr<Tensor> LlamaAttention::backward(const Tensor& dy, int64_t B, int64_t T, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = B * T;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, store.take(name_ + "/x"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor q, store.take(name_ + "/q"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor k, store.take(name_ + "/k"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor v, store.take(name_ + "/v"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor out, store.take(name_ + "/out"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor lse, store.take(name_ + "/lse"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dout, act({N, H_ * D_}));
  linear_backward(o_, out.f32(), dy.f32(), N, dout.f32(), pool);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dq, act({N, H_ * D_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dk, act({N, Hkv_ * D_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dv, act({N, Hkv_ * D_}));
  cpu::attention_backward(dout.f32(), H_ * D_, q.f32(), H_ * D_, k.f32(), Hkv_ * D_, v.f32(), Hkv_ * D_, out.f32(),
                          H_ * D_, lse.f32(), B, T, H_, Hkv_, D_, dq.f32(), H_ * D_, dk.f32(), Hkv_ * D_, dv.f32(),
                          Hkv_ * D_, pool);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, token_positions(B, T));
  cpu::rope_backward(dq.f32(), N, H_, D_, H_ * D_, pos.i32(), theta_, pool);
  cpu::rope_backward(dk.f32(), N, Hkv_, D_, Hkv_ * D_, pos.i32(), theta_, pool);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, act({N, C_}));
  linear_backward(q_, x.f32(), dq.f32(), N, dx.f32(), pool);
  linear_backward(k_, x.f32(), dk.f32(), N, dx.f32(), pool, /*accumulate_dx=*/true);
  linear_backward(v_, x.f32(), dv.f32(), N, dx.f32(), pool, /*accumulate_dx=*/true);
  return dx;
}

}  // namespace memtrain::model
