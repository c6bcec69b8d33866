#include "model/attention.h"

#include <algorithm>
#include <cmath>

#include "core/cpu/rope.h"
#include "model/ring_attention.h"

namespace memtrain::model {
namespace {
float proj_std(const ModelConfig& cfg) {
  // GPT-2 scales the residual projections by 1/sqrt(2 * n_layer) (nanoGPT's c_proj init).
  return static_cast<float>(cfg.init_std / std::sqrt(2.0 * cfg.n_layer));
}
absl::StatusOr<Tensor> act(Shape shape) { return Tensor::empty(std::move(shape), DType::kF32, MemCategory::kActivations); }
}  // namespace

Gpt2Attention::Gpt2Attention(ParamSet& params, const std::string& prefix, const ModelConfig& cfg,
                             const TensorParallel& tp, const ContextParallel& cp)
    : name_(prefix), C_(cfg.n_embd), H_(cfg.n_head / tp.size), Cl_(cfg.n_embd / tp.size), tp_(tp), cp_(cp) {
  const float std = static_cast<float>(cfg.init_std);
  // This rank's heads are the same columns of each of q, k and v in the fused (C, 3C) weight.
  const IndexRange heads = tp.part(C_);
  std::vector<IndexRange> qkv_columns;
  for (int64_t i = 0; i < 3; ++i) qkv_columns.push_back({i * C_ + heads.first, i * C_ + heads.second});
  c_attn_ = make_linear(params, prefix + ".c_attn", C_, 3 * C_, cfg.bias, /*in_out=*/true, std, tp,
                        LinearSplit::column(qkv_columns));
  c_proj_ = make_linear(params, prefix + ".c_proj", C_, C_, cfg.bias, /*in_out=*/true, proj_std(cfg), tp,
                        LinearSplit::row(heads));
}

int64_t Gpt2Attention::saved_bytes(const ModelConfig& cfg, int64_t B, int64_t T, int tp) {
  const int64_t Cl = cfg.n_embd / tp;
  return 4 * (B * T * 3 * Cl + B * T * Cl + B * (cfg.n_head / tp) * T);
}

int64_t Gpt2Attention::deferring_backward_peak_bytes(const ModelConfig& cfg, int64_t B, int64_t T,
                                                     const TensorParallel& tp) {
  const int64_t N = B * T, C = cfg.n_embd, rows = tp.local_rows(N), Cl = C / tp.size;
  // Saved x, dout (N, C/tp), dqkv (N, 3C/tp) and dx; with SP the gathered dy and x and dx reduce-scattered.
  const int64_t sp = tp.sequence_parallel ? 2 * N * C + rows * C : 0;
  return saved_bytes(cfg, B, T, tp.size) + 4 * (rows * C + N * 4 * Cl + N * C + sp);
}

absl::StatusOr<Tensor> Gpt2Attention::forward(const Tensor& x, int64_t B, int64_t T, ActivationStore& store) const {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = B * T, D = Cl_ / H_, W = 3 * Cl_;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor qkv, act({N, W}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor out, act({N, Cl_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor lse, act({B, H_, T}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor xf, tp_.gather_rows(x));
  MEMTRAIN_RETURN_IF_ERROR(linear_forward(c_attn_, xf.f32(), N, qkv.f32(), pool, store));
  const float* q = qkv.f32();
  const RingAttentionDims dims{B, T, H_, H_, D, true, ContextParallel::first_keys(store)};
  MEMTRAIN_RETURN_IF_ERROR(
      ring_attention_forward(cp_, q, W, q + Cl_, W, q + 2 * Cl_, W, dims, out.f32(), Cl_, lse.f32()));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor y, row_parallel_forward(c_proj_, out.f32(), N, pool, tp_, store));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/x", x, ActivationStore::Kind::kLinearInput));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/qkv", qkv));
  if (!store.recomputing_attention()) {
    MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/out", out));
    MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/lse", lse));
  }
  return y;
}

absl::StatusOr<Tensor> Gpt2Attention::backward(const Tensor& dy, int64_t B, int64_t T, ActivationStore& store) {
  const int64_t N = B * T, D = Cl_ / H_, W = 3 * Cl_;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, store.take(name_ + "/x"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor qkv, store.take(name_ + "/qkv"));
  const float* q = qkv.f32();
  const RingAttentionDims dims{B, T, H_, H_, D, true, ContextParallel::first_keys(store)};
  Tensor out, lse;
  if (store.has(name_ + "/out")) {
    MEMTRAIN_ASSIGN_OR_RETURN(out, store.take(name_ + "/out"));
    MEMTRAIN_ASSIGN_OR_RETURN(lse, store.take(name_ + "/lse"));
  } else {  // recompute_attention: the attention core again, from the saved q, k, v
    MEMTRAIN_ASSIGN_OR_RETURN(out, act({N, Cl_}));
    MEMTRAIN_ASSIGN_OR_RETURN(lse, act({B, H_, T}));
    MEMTRAIN_RETURN_IF_ERROR(
        ring_attention_forward(cp_, q, W, q + Cl_, W, q + 2 * Cl_, W, dims, out.f32(), Cl_, lse.f32()));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dout, act({N, Cl_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dyf, tp_.gather_rows(dy));
  MEMTRAIN_RETURN_IF_ERROR(linear_backward(c_proj_, out, dyf, N, dout.f32(), store));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dqkv, act({N, W}));
  float* dq = dqkv.f32();
  MEMTRAIN_RETURN_IF_ERROR(ring_attention_backward(cp_, dout.f32(), Cl_, q, W, q + Cl_, W, q + 2 * Cl_, W, out.f32(),
                                                   Cl_, lse.f32(), dims, dq, W, dq + Cl_, W, dq + 2 * Cl_, W));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, act({N, C_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor xf, tp_.gather_rows(x));
  MEMTRAIN_RETURN_IF_ERROR(linear_backward(c_attn_, xf, dqkv, N, dx.f32(), store));
  return tp_.sum_rows(dx);  // every rank's heads contribute to dx
}

LlamaAttention::LlamaAttention(ParamSet& params, const std::string& prefix, const ModelConfig& cfg,
                               const TensorParallel& tp, const ContextParallel& cp)
    : name_(prefix),
      C_(cfg.n_embd),
      H_(cfg.n_head / tp.size),
      Hkv_(local_kv_heads(cfg, tp.size)),
      D_(cfg.head_dim()),
      Hkv_global_(cfg.kv_heads()),
      kv_sharers_(cfg.kv_heads() >= tp.size ? 1 : tp.size / static_cast<int>(cfg.kv_heads())),
      theta_(cfg.rope_theta),
      tp_(tp),
      cp_(cp) {
  const float std = static_cast<float>(cfg.init_std);
  const int64_t qd = cfg.n_head * D_, kvd = Hkv_global_ * D_;
  // Rank r's query heads use kv heads [r * Hkv / tp, ...), or the one kv head r / sharers when ranks share.
  const int64_t kv_head = tp.rank / kv_sharers_ * Hkv_;
  const IndexRange kv_rows{kv_head * D_, (kv_head + Hkv_) * D_};
  const bool kv_primary = tp.rank % kv_sharers_ == 0;
  q_ = make_linear(params, prefix + ".q_proj", C_, qd, false, false, std, tp, LinearSplit::column({tp.part(qd)}));
  k_ = make_linear(params, prefix + ".k_proj", C_, kvd, false, false, std, tp, LinearSplit::column({kv_rows}, kv_primary));
  v_ = make_linear(params, prefix + ".v_proj", C_, kvd, false, false, std, tp, LinearSplit::column({kv_rows}, kv_primary));
  o_ = make_linear(params, prefix + ".o_proj", qd, C_, false, false, std, tp, LinearSplit::row(tp.part(qd)));
}

int64_t LlamaAttention::deferring_backward_peak_bytes(const ModelConfig& cfg, int64_t B, int64_t T,
                                                     const TensorParallel& tp) {
  const int64_t N = B * T, C = cfg.n_embd, rows = tp.local_rows(N), D = cfg.head_dim();
  const int64_t qd = cfg.n_head / tp.size * D, kvd = local_kv_heads(cfg, tp.size) * D;
  const bool shared = cfg.kv_heads() < tp.size;
  // Saved x, dout, dq, dk, dv and dx; with SP the gathered dy and x; at the end either the sharers' buffer or,
  // with SP, dx reduce-scattered.
  const int64_t grads = rows * C + N * (2 * qd + 2 * kvd) + N * C + (tp.sequence_parallel ? 2 * N * C : 0);
  const int64_t sums = shared ? 2 * N * kvd : 0;
  const int64_t last = std::max(shared ? N * cfg.kv_heads() * D : 0, tp.sequence_parallel ? rows * C : 0);
  return saved_bytes(cfg, B, T, tp.size) + 4 * (grads + sums + last);
}

int64_t LlamaAttention::local_kv_heads(const ModelConfig& cfg, int tp) {
  return cfg.kv_heads() >= tp ? cfg.kv_heads() / tp : 1;
}

int64_t LlamaAttention::saved_bytes(const ModelConfig& cfg, int64_t B, int64_t T, int tp) {
  const int64_t N = B * T, H = cfg.n_head / tp, qd = H * cfg.head_dim(), kvd = local_kv_heads(cfg, tp) * cfg.head_dim();
  return 4 * (2 * N * qd + 2 * N * kvd + B * H * T);
}

absl::StatusOr<Tensor> LlamaAttention::sum_over_kv_sharers(const Tensor& d) const {
  // Each rank writes its gradient into its kv head's columns of a zeroed (N, Hkv * D) tensor; one sum over tp
  // adds the sharers of every head at once.
  const int64_t N = d.rows(), W = Hkv_global_ * D_, col = tp_.rank / kv_sharers_ * D_;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor all, Tensor::zeros({N, W}, DType::kF32, MemCategory::kActivations));
  for (int64_t i = 0; i < N; ++i) std::copy_n(d.f32() + i * D_, D_, all.f32() + i * W + col);
  MEMTRAIN_RETURN_IF_ERROR(tp_.sum(all));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor summed, act({N, D_}));
  for (int64_t i = 0; i < N; ++i) std::copy_n(all.f32() + i * W + col, D_, summed.f32() + i * D_);
  return summed;
}

absl::StatusOr<Tensor> LlamaAttention::forward(const Tensor& x, int64_t B, int64_t T, ActivationStore& store) const {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = B * T;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor q, act({N, H_ * D_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor k, act({N, Hkv_ * D_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor v, act({N, Hkv_ * D_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor out, act({N, H_ * D_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor lse, act({B, H_, T}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, cp_.positions(B, T, store));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor xf, tp_.gather_rows(x));
  MEMTRAIN_RETURN_IF_ERROR(linear_forward(q_, xf.f32(), N, q.f32(), pool, store));
  MEMTRAIN_RETURN_IF_ERROR(linear_forward(k_, xf.f32(), N, k.f32(), pool, store));
  MEMTRAIN_RETURN_IF_ERROR(linear_forward(v_, xf.f32(), N, v.f32(), pool, store));
  cpu::rope_forward(q.f32(), N, H_, D_, H_ * D_, pos.i32(), theta_, pool);
  cpu::rope_forward(k.f32(), N, Hkv_, D_, Hkv_ * D_, pos.i32(), theta_, pool);
  const RingAttentionDims dims{B, T, H_, Hkv_, D_, true, ContextParallel::first_keys(store)};
  MEMTRAIN_RETURN_IF_ERROR(ring_attention_forward(cp_, q.f32(), H_ * D_, k.f32(), Hkv_ * D_, v.f32(), Hkv_ * D_,
                                                  dims, out.f32(), H_ * D_, lse.f32()));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor y, row_parallel_forward(o_, out.f32(), N, pool, tp_, store));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/x", x, ActivationStore::Kind::kLinearInput));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/q", q));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/k", k));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/v", v));
  if (!store.recomputing_attention()) {
    MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/out", out));
    MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/lse", lse));
  }
  return y;
}

absl::StatusOr<Tensor> LlamaAttention::backward(const Tensor& dy, int64_t B, int64_t T, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = B * T;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, store.take(name_ + "/x"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor q, store.take(name_ + "/q"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor k, store.take(name_ + "/k"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor v, store.take(name_ + "/v"));
  const RingAttentionDims dims{B, T, H_, Hkv_, D_, true, ContextParallel::first_keys(store)};
  Tensor out, lse;
  if (store.has(name_ + "/out")) {
    MEMTRAIN_ASSIGN_OR_RETURN(out, store.take(name_ + "/out"));
    MEMTRAIN_ASSIGN_OR_RETURN(lse, store.take(name_ + "/lse"));
  } else {  // recompute_attention: the attention core again, from the saved (rotated) q, k and v
    MEMTRAIN_ASSIGN_OR_RETURN(out, act({N, H_ * D_}));
    MEMTRAIN_ASSIGN_OR_RETURN(lse, act({B, H_, T}));
    MEMTRAIN_RETURN_IF_ERROR(ring_attention_forward(cp_, q.f32(), H_ * D_, k.f32(), Hkv_ * D_, v.f32(), Hkv_ * D_,
                                                    dims, out.f32(), H_ * D_, lse.f32()));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dout, act({N, H_ * D_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dyf, tp_.gather_rows(dy));
  MEMTRAIN_RETURN_IF_ERROR(linear_backward(o_, out, dyf, N, dout.f32(), store));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dq, act({N, H_ * D_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dk, act({N, Hkv_ * D_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dv, act({N, Hkv_ * D_}));
  MEMTRAIN_RETURN_IF_ERROR(ring_attention_backward(cp_, dout.f32(), H_ * D_, q.f32(), H_ * D_, k.f32(), Hkv_ * D_,
                                                   v.f32(), Hkv_ * D_, out.f32(), H_ * D_, lse.f32(), dims,
                                                   dq.f32(), H_ * D_, dk.f32(), Hkv_ * D_, dv.f32(), Hkv_ * D_));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, cp_.positions(B, T, store));
  cpu::rope_backward(dq.f32(), N, H_, D_, H_ * D_, pos.i32(), theta_, pool);
  cpu::rope_backward(dk.f32(), N, Hkv_, D_, Hkv_ * D_, pos.i32(), theta_, pool);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, act({N, C_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor xf, tp_.gather_rows(x));
  MEMTRAIN_RETURN_IF_ERROR(linear_backward(q_, xf, dq, N, dx.f32(), store));
  MEMTRAIN_RETURN_IF_ERROR(key_value_backward(xf, dk, dv, dx, store));
  return tp_.sum_rows(dx);
}

absl::Status LlamaAttention::key_value_backward(const Tensor& xf, const Tensor& dk, const Tensor& dv, Tensor& dx,
                                                ActivationStore& store) const {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = xf.rows();
  if (kv_sharers_ == 1) {
    MEMTRAIN_RETURN_IF_ERROR(linear_backward(k_, xf, dk, N, dx.f32(), store, /*accumulate_dx=*/true));
    MEMTRAIN_RETURN_IF_ERROR(linear_backward(v_, xf, dv, N, dx.f32(), store, /*accumulate_dx=*/true));
  } else {
    // A shared kv head's weight gradient comes from all its sharers' query heads; dx takes only this rank's part,
    // since the caller sums dx over tp.
    for (auto [w, d] : {std::pair{&k_, &dk}, std::pair{&v_, &dv}}) {
      MEMTRAIN_ASSIGN_OR_RETURN(Tensor summed, sum_over_kv_sharers(*d));
      MEMTRAIN_RETURN_IF_ERROR(linear_backward(*w, xf, summed, N, nullptr, store));
      MEMTRAIN_RETURN_IF_ERROR(linear_backward_input(*w, d->f32(), N, dx.f32(), pool, /*accumulate_dx=*/true, store));
    }
  }
  return absl::OkStatus();
}

}  // namespace memtrain::model
