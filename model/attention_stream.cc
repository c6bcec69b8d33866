// StreamBP's chunk-wise attention for both architectures (attention.h): keys and values of every row first, then
// per chunk the queries, the attention core over the prefix and the chunk (chunk_attention.h) and the output
// projection, forward and backward. A whole-sequence chunk runs exactly the unchunked layer's operations.
#include "core/cpu/rope.h"
#include "model/attention.h"

namespace memtrain::model {
namespace {
absl::StatusOr<Tensor> act(Shape shape) {
  return Tensor::empty(std::move(shape), DType::kF32, MemCategory::kActivations);
}

// StreamBP runs without SP, the all-to-all part of cp or packed rows (config validation rejects them).
void check_stream_layout(const TensorParallel& tp, const ContextParallel& cp, const ActivationStore& store) {
  MEMTRAIN_CHECK_MSG(!tp.sequence_parallel && cp.a2a_size == 1 && store.packed() == nullptr,
                     "stream blocks run without SP, cp_a2a and packed rows");
}
}  // namespace

absl::Status Gpt2Attention::stream_key_values(const Tensor& y, const SequenceChunk& rows, StreamKeyValues& kv,
                                              const ActivationStore& store) const {
  check_stream_layout(tp_, cp_, store);
  const int64_t W = 3 * Cl_;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor qkv, act({rows.rows(), W}));
  // c_attn's input reaches an input observer (QuAILoRA's calibration) in the chunk's forward; not here as well.
  const ActivationStore unobserved(/*keep=*/false);
  MEMTRAIN_RETURN_IF_ERROR(
      linear_forward(c_attn_, y.f32(), rows.rows(), qkv.f32(), ThreadPool::global(), unobserved));
  rows.to_full(qkv.f32() + Cl_, W, kv.kv.f32(), kv.ld(), 2 * Cl_);  // k and v side by side, as kv holds them
  return absl::OkStatus();
}

absl::StatusOr<Tensor> Gpt2Attention::stream_forward(const Tensor& y, const SequenceChunk& rows,
                                                     const StreamKeyValues& kv, ActivationStore& store) const {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = rows.rows(), D = Cl_ / H_, W = 3 * Cl_;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor qkv, act({N, W}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor out, act({N, Cl_}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor lse, act({rows.B, H_, rows.c()}));
  MEMTRAIN_RETURN_IF_ERROR(linear_forward(c_attn_, y.f32(), N, qkv.f32(), pool, store));
  MEMTRAIN_RETURN_IF_ERROR(chunk_attention_forward(qkv.f32(), W, kv, rows, H_, H_, D, out.f32(), Cl_, lse.f32()));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor a, row_parallel_forward(c_proj_, out.f32(), N, pool, tp_, store));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/x", y, ActivationStore::Kind::kLinearInput));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/qkv", qkv));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/out", out));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/lse", lse));
  return a;
}

absl::StatusOr<Tensor> Gpt2Attention::stream_backward(const Tensor& dy, const SequenceChunk& rows,
                                                      StreamKeyValues& kv, ActivationStore& store) {
  const int64_t N = rows.rows(), D = Cl_ / H_, W = 3 * Cl_;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, store.take(name_ + "/x"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor qkv, store.take(name_ + "/qkv"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor out, store.take(name_ + "/out"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor lse, store.take(name_ + "/lse"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dout, act({N, Cl_}));
  MEMTRAIN_RETURN_IF_ERROR(linear_backward(c_proj_, out, dy, N, dout.f32(), store));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dqkv, act({N, W}));
  MEMTRAIN_RETURN_IF_ERROR(chunk_attention_backward(dout.f32(), Cl_, qkv.f32(), W, kv, out.f32(), Cl_, lse.f32(),
                                                    rows, H_, H_, D, dqkv.f32(), W));
  if (kv.deferred) {  // the keys' and values' part comes in stream_key_value_backward
    for (int64_t i = 0; i < N; ++i) std::fill_n(dqkv.f32() + i * W + Cl_, 2 * Cl_, 0.0f);
  } else {  // the chunk's keys and values have their whole gradient now: every later chunk has run
    rows.to_part(kv.dkv.f32(), kv.ld(), dqkv.f32() + Cl_, W, 2 * Cl_);
  }
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, act({N, C_}));
  MEMTRAIN_RETURN_IF_ERROR(linear_backward(c_attn_, x, dqkv, N, dx.f32(), store));
  return tp_.sum_rows(dx);
}

absl::StatusOr<Tensor> Gpt2Attention::stream_key_value_backward(const Tensor& y, const SequenceChunk& rows,
                                                                const StreamKeyValues& kv, ActivationStore& store) {
  const int64_t N = rows.rows(), W = 3 * Cl_;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dqkv, Tensor::zeros({N, W}, DType::kF32, MemCategory::kActivations));
  rows.to_part(kv.dkv.f32(), kv.ld(), dqkv.f32() + Cl_, W, 2 * Cl_);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, act({N, C_}));
  MEMTRAIN_RETURN_IF_ERROR(linear_backward(c_attn_, y, dqkv, N, dx.f32(), store));
  return tp_.sum_rows(dx);
}

int64_t Gpt2Attention::stream_saved_bytes(const ModelConfig& cfg, int64_t B, int64_t c, int tp) {
  return saved_bytes(cfg, B, c, tp);  // qkv, out and lse, as the unchunked layer
}

absl::Status LlamaAttention::stream_key_values(const Tensor& y, const SequenceChunk& rows, StreamKeyValues& kv,
                                               const ActivationStore& store) const {
  check_stream_layout(tp_, cp_, store);
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = rows.rows(), w = Hkv_ * D_;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor k, act({N, w}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor v, act({N, w}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, cp_.positions(rows.B, rows.T, store));
  MEMTRAIN_ASSIGN_OR_RETURN(pos, rows.gather(pos.view({rows.B * rows.T, 1}), MemCategory::kWorkspace));
  MEMTRAIN_RETURN_IF_ERROR(linear_forward(k_, y.f32(), N, k.f32(), pool, store));
  MEMTRAIN_RETURN_IF_ERROR(linear_forward(v_, y.f32(), N, v.f32(), pool, store));
  cpu::rope_forward(k.f32(), N, Hkv_, D_, w, pos.i32(), theta_, pool);
  rows.to_full(k.f32(), w, kv.kv.f32(), kv.ld(), w);
  rows.to_full(v.f32(), w, kv.kv.f32() + w, kv.ld(), w);
  return absl::OkStatus();
}

absl::StatusOr<Tensor> LlamaAttention::stream_forward(const Tensor& y, const SequenceChunk& rows,
                                                      const StreamKeyValues& kv, ActivationStore& store) const {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = rows.rows(), qw = H_ * D_;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor q, act({N, qw}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor out, act({N, qw}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor lse, act({rows.B, H_, rows.c()}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, cp_.positions(rows.B, rows.T, store));
  MEMTRAIN_ASSIGN_OR_RETURN(pos, rows.gather(pos.view({rows.B * rows.T, 1}), MemCategory::kWorkspace));
  MEMTRAIN_RETURN_IF_ERROR(linear_forward(q_, y.f32(), N, q.f32(), pool, store));
  cpu::rope_forward(q.f32(), N, H_, D_, qw, pos.i32(), theta_, pool);
  MEMTRAIN_RETURN_IF_ERROR(chunk_attention_forward(q.f32(), qw, kv, rows, H_, Hkv_, D_, out.f32(), qw, lse.f32()));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor a, row_parallel_forward(o_, out.f32(), N, pool, tp_, store));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/x", y, ActivationStore::Kind::kLinearInput));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/q", q));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/out", out));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/lse", lse));
  return a;
}

absl::StatusOr<Tensor> LlamaAttention::stream_backward(const Tensor& dy, const SequenceChunk& rows,
                                                       StreamKeyValues& kv, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = rows.rows(), qw = H_ * D_, w = Hkv_ * D_;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, store.take(name_ + "/x"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor q, store.take(name_ + "/q"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor out, store.take(name_ + "/out"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor lse, store.take(name_ + "/lse"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dout, act({N, qw}));
  MEMTRAIN_RETURN_IF_ERROR(linear_backward(o_, out, dy, N, dout.f32(), store));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dq, act({N, qw}));
  MEMTRAIN_RETURN_IF_ERROR(chunk_attention_backward(dout.f32(), qw, q.f32(), qw, kv, out.f32(), qw, lse.f32(), rows,
                                                    H_, Hkv_, D_, dq.f32(), qw));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, cp_.positions(rows.B, rows.T, store));
  MEMTRAIN_ASSIGN_OR_RETURN(pos, rows.gather(pos.view({rows.B * rows.T, 1}), MemCategory::kWorkspace));
  cpu::rope_backward(dq.f32(), N, H_, D_, qw, pos.i32(), theta_, pool);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, act({N, C_}));
  MEMTRAIN_RETURN_IF_ERROR(linear_backward(q_, x, dq, N, dx.f32(), store));
  // Without cp the chunk's keys and values have their whole gradient now: every later chunk has run.
  if (!kv.deferred) MEMTRAIN_RETURN_IF_ERROR(stream_key_value_gradient(x, rows, kv, pos, dx, store));
  return tp_.sum_rows(dx);
}

absl::Status LlamaAttention::stream_key_value_gradient(const Tensor& y, const SequenceChunk& rows,
                                                       const StreamKeyValues& kv, const Tensor& pos, Tensor& dx,
                                                       ActivationStore& store) const {
  const int64_t N = rows.rows(), w = Hkv_ * D_;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dk, act({N, w}));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dv, act({N, w}));
  rows.to_part(kv.dkv.f32(), kv.ld(), dk.f32(), w, w);
  rows.to_part(kv.dkv.f32() + w, kv.ld(), dv.f32(), w, w);
  cpu::rope_backward(dk.f32(), N, Hkv_, D_, w, pos.i32(), theta_, ThreadPool::global());
  return key_value_backward(y, dk, dv, dx, store);
}

absl::StatusOr<Tensor> LlamaAttention::stream_key_value_backward(const Tensor& y, const SequenceChunk& rows,
                                                                 const StreamKeyValues& kv, ActivationStore& store) {
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor pos, cp_.positions(rows.B, rows.T, store));
  MEMTRAIN_ASSIGN_OR_RETURN(pos, rows.gather(pos.view({rows.B * rows.T, 1}), MemCategory::kWorkspace));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, Tensor::zeros({rows.rows(), C_}, DType::kF32, MemCategory::kActivations));
  MEMTRAIN_RETURN_IF_ERROR(stream_key_value_gradient(y, rows, kv, pos, dx, store));
  return tp_.sum_rows(dx);
}

int64_t LlamaAttention::stream_saved_bytes(const ModelConfig& cfg, int64_t B, int64_t c, int tp) {
  const int64_t N = B * c, H = cfg.n_head / tp, qw = H * cfg.head_dim();
  return 4 * (2 * N * qw + B * H * c);  // q, out and lse: the keys and values are the block's
}

}  // namespace memtrain::model
