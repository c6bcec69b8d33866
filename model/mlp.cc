#include "model/mlp.h"

#include <cmath>

#include "core/cpu/gelu.h"
#include "core/cpu/swiglu.h"

namespace memtrain::model {
namespace {
absl::StatusOr<Tensor> act(Shape shape) { return Tensor::empty(std::move(shape), DType::kF32, MemCategory::kActivations); }
}  // namespace

Gpt2Mlp::Gpt2Mlp(ParamSet& params, const std::string& prefix, const ModelConfig& cfg, const TensorParallel& tp)
    : name_(prefix), C_(cfg.n_embd), F_(cfg.ffn() / tp.size), tp_(tp) {
  const float std = static_cast<float>(cfg.init_std);
  const IndexRange hidden = tp.part(cfg.ffn());
  c_fc_ = make_linear(params, prefix + ".c_fc", C_, cfg.ffn(), cfg.bias, /*in_out=*/true, std, tp,
                      LinearSplit::column({hidden}));
  // Residual projection scaled by 1/sqrt(2 * n_layer), as GPT-2 does.
  c_proj_ = make_linear(params, prefix + ".c_proj", cfg.ffn(), C_, cfg.bias, /*in_out=*/true,
                        static_cast<float>(cfg.init_std / std::sqrt(2.0 * cfg.n_layer)), tp, LinearSplit::row(hidden));
}

absl::StatusOr<Tensor> Gpt2Mlp::forward(const Tensor& x, ActivationStore& store) const {
  ThreadPool& pool = ThreadPool::global();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor xf, tp_.gather_rows(x));
  const int64_t N = xf.rows();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor h, act({N, F_}));
  MEMTRAIN_RETURN_IF_ERROR(linear_forward(c_fc_, xf.f32(), N, h.f32(), pool, store));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor g, act({N, F_}));  // freed at the end of forward, recomputed in backward
  cpu::gelu_forward(h.f32(), g.f32(), N * F_, pool);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor y, row_parallel_forward(c_proj_, g.f32(), N, pool, tp_, store));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/x", x, ActivationStore::Kind::kLinearInput));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/h", h));
  return y;
}

absl::StatusOr<Tensor> Gpt2Mlp::backward(const Tensor& dy, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, store.take(name_ + "/x"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor h, store.take(name_ + "/h"));
  const int64_t N = h.rows();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor g, act({N, F_}));
  cpu::gelu_forward(h.f32(), g.f32(), N * F_, pool);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dyf, tp_.gather_rows(dy));
  // dg overwrites g once c_proj's weight gradient has read it, unless that is deferred (zero bubble).
  Tensor dg = g;
  if (store.deferring_weight_grads()) {
    MEMTRAIN_ASSIGN_OR_RETURN(dg, act({N, F_}));
  }
  MEMTRAIN_RETURN_IF_ERROR(linear_backward(c_proj_, g, dyf, N, dg.f32(), store));
  cpu::gelu_backward(dg.f32(), h.f32(), dg.f32(), N * F_, pool);  // dh, in place
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, act({N, C_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor xf, tp_.gather_rows(x));
  MEMTRAIN_RETURN_IF_ERROR(linear_backward(c_fc_, xf, dg, N, dx.f32(), store));
  return tp_.sum_rows(dx);
}

LlamaMlp::LlamaMlp(ParamSet& params, const std::string& prefix, const ModelConfig& cfg, const TensorParallel& tp)
    : name_(prefix), C_(cfg.n_embd), F_(cfg.ffn() / tp.size), tp_(tp) {
  const float std = static_cast<float>(cfg.init_std);
  const int64_t F = cfg.ffn();
  const IndexRange hidden = tp.part(F);
  gate_ = make_linear(params, prefix + ".gate_proj", C_, F, false, false, std, tp, LinearSplit::column({hidden}));
  up_ = make_linear(params, prefix + ".up_proj", C_, F, false, false, std, tp, LinearSplit::column({hidden}));
  down_ = make_linear(params, prefix + ".down_proj", F, C_, false, false, std, tp, LinearSplit::row(hidden));
}

absl::StatusOr<Tensor> LlamaMlp::forward(const Tensor& x, ActivationStore& store) const {
  ThreadPool& pool = ThreadPool::global();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor xf, tp_.gather_rows(x));
  const int64_t N = xf.rows();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor gate, act({N, F_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor up, act({N, F_}));
  MEMTRAIN_RETURN_IF_ERROR(linear_forward(gate_, xf.f32(), N, gate.f32(), pool, store));
  MEMTRAIN_RETURN_IF_ERROR(linear_forward(up_, xf.f32(), N, up.f32(), pool, store));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor a, act({N, F_}));  // freed at the end of forward, recomputed in backward
  cpu::swiglu_forward(gate.f32(), up.f32(), a.f32(), N * F_, pool);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor y, row_parallel_forward(down_, a.f32(), N, pool, tp_, store));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/x", x, ActivationStore::Kind::kLinearInput));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/gate", gate));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/up", up));
  return y;
}

absl::StatusOr<Tensor> LlamaMlp::backward(const Tensor& dy, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, store.take(name_ + "/x"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor gate, store.take(name_ + "/gate"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor up, store.take(name_ + "/up"));
  const int64_t N = gate.rows();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor a, act({N, F_}));
  cpu::swiglu_forward(gate.f32(), up.f32(), a.f32(), N * F_, pool);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dyf, tp_.gather_rows(dy));
  // da overwrites a once down's weight gradient has read it, unless that is deferred (zero bubble).
  Tensor da = a;
  if (store.deferring_weight_grads()) {
    MEMTRAIN_ASSIGN_OR_RETURN(da, act({N, F_}));
  }
  MEMTRAIN_RETURN_IF_ERROR(linear_backward(down_, a, dyf, N, da.f32(), store));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dgate, act({N, F_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dup, act({N, F_}));
  cpu::swiglu_backward(da.f32(), gate.f32(), up.f32(), dgate.f32(), dup.f32(), N * F_, pool);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, act({N, C_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor xf, tp_.gather_rows(x));
  MEMTRAIN_RETURN_IF_ERROR(linear_backward(gate_, xf, dgate, N, dx.f32(), store));
  MEMTRAIN_RETURN_IF_ERROR(linear_backward(up_, xf, dup, N, dx.f32(), store, /*accumulate_dx=*/true));
  return tp_.sum_rows(dx);
}

}  // namespace memtrain::model
