#include "model/chunk_attention.h"

#include <limits>

#include "core/cpu/attention.h"
#include "model/ring_attention.h"

namespace memtrain::model {

absl::StatusOr<StreamKeyValues> StreamKeyValues::create(int64_t rows, int64_t width, bool with_gradient) {
  StreamKeyValues s;
  s.width = width;
  MEMTRAIN_ASSIGN_OR_RETURN(s.kv, Tensor::empty({rows, 2 * width}, DType::kF32, MemCategory::kActivations));
  if (with_gradient) {
    MEMTRAIN_ASSIGN_OR_RETURN(s.dkv, Tensor::zeros({rows, 2 * width}, DType::kF32, MemCategory::kActivations));
  }
  return s;
}

absl::Status gather_key_values(const ContextParallel& cp, int64_t B, int64_t T, StreamKeyValues& kv) {
  MEMTRAIN_CHECK(cp.a2a_size == 1 && cp.comm != nullptr && B % cp.slots == 0);
  const int64_t sequences = B / cp.slots, Tw = T * cp.chunks(), ld = kv.ld(), local = B * T * ld;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor all, Tensor::empty({cp.size * local}, DType::kF32, MemCategory::kCommunication));
  MEMTRAIN_RETURN_IF_ERROR(cp.comm->all_gather(kv.kv.f32(), all.f32(), local, DType::kF32));
  const bool with_gradient = kv.dkv.defined();
  kv.kv = Tensor();
  kv.dkv = Tensor();
  MEMTRAIN_ASSIGN_OR_RETURN(StreamKeyValues whole, StreamKeyValues::create(sequences * Tw, kv.width, with_gradient));
  for (int r = 0; r < cp.size; ++r)
    for (int j = 0; j < cp.slots; ++j)
      for (int64_t b = 0; b < sequences; ++b)
        std::copy_n(all.f32() + r * local + (j * sequences + b) * T * ld, T * ld,
                    whole.kv.f32() + (b * Tw + cp.chunk_of(r, j) * T) * ld);
  whole.deferred = with_gradient;
  for (int64_t i = 0; i < B; ++i) {
    whole.base.push_back(i % sequences * Tw);
    whole.offset.push_back(cp.chunk_of(cp.rank, static_cast<int>(i / sequences)) * T);
  }
  kv = std::move(whole);
  return absl::OkStatus();
}

absl::Status reduce_key_value_gradients(const ContextParallel& cp, int64_t B, int64_t T, StreamKeyValues& kv) {
  MEMTRAIN_CHECK(!kv.base.empty() && kv.dkv.defined());
  const int64_t sequences = B / cp.slots, Tw = T * cp.chunks(), ld = kv.ld(), local = B * T * ld;
  // Every rank's rows of the whole-sequence gradient, rank by rank, then summed into this rank's.
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor send, Tensor::empty({cp.size * local}, DType::kF32, MemCategory::kCommunication));
  for (int r = 0; r < cp.size; ++r)
    for (int j = 0; j < cp.slots; ++j)
      for (int64_t b = 0; b < sequences; ++b)
        std::copy_n(kv.dkv.f32() + (b * Tw + cp.chunk_of(r, j) * T) * ld, T * ld,
                    send.f32() + r * local + (j * sequences + b) * T * ld);
  kv.dkv = Tensor();
  kv.kv = Tensor();  // the keys and values are no longer needed: the projections' backward takes gradients only
  MEMTRAIN_ASSIGN_OR_RETURN(kv.dkv, Tensor::empty({B * T, ld}, DType::kF32, MemCategory::kActivations));
  MEMTRAIN_RETURN_IF_ERROR(
      cp.comm->reduce_scatter(send.f32(), kv.dkv.f32(), local, DType::kF32, parallel::ReduceOp::kSum));
  kv.base.clear();
  kv.offset.clear();
  return absl::OkStatus();
}

int64_t key_value_exchange_bytes(const ContextParallel& cp, int64_t rows, int64_t width) {
  return cp.group_size() > 1 ? 4 * cp.size * rows * 2 * width : 0;
}

absl::Status chunk_attention_forward(const float* q, int64_t ldq, const StreamKeyValues& kv, const SequenceChunk& r,
                                     int64_t H, int64_t Hkv, int64_t D, float* out, int64_t ldo, float* lse) {
  const int64_t ld = kv.ld();
  if (r.whole() && kv.base.empty()) {
    return ring_attention_forward(ContextParallel{}, q, ldq, kv.k(), ld, kv.v(), ld, {r.B, r.T, H, Hkv, D}, out, ldo,
                                  lse);
  }
  ThreadPool& pool = ThreadPool::global();
  const int64_t c = r.c();
  std::fill(lse, lse + r.B * H * c, -std::numeric_limits<float>::infinity());
  for (int64_t b = 0; b < r.B; ++b) {
    const float* qb = q + b * c * ldq;
    const int64_t base = kv.seq_base(b, r.T), s = kv.seq_offset(b) + r.s;  // s: the chunk's global start
    const float *k = kv.k() + base * ld, *v = kv.v() + base * ld;
    float *ob = out + b * c * ldo, *lb = lse + b * H * c;
    if (s > 0) {
      cpu::attention_forward_merge(qb, ldq, k, ld, v, ld, {1, c, s, H, Hkv, D, cpu::AttentionMask::kFull}, ob, ldo,
                                   lb, pool);
    }
    cpu::attention_forward_merge(qb, ldq, k + s * ld, ld, v + s * ld, ld,
                                 {1, c, c, H, Hkv, D, cpu::AttentionMask::kCausal}, ob, ldo, lb, pool);
  }
  return absl::OkStatus();
}

absl::Status chunk_attention_backward(const float* dout, int64_t lddo, const float* q, int64_t ldq,
                                      StreamKeyValues& kv, const float* out, int64_t ldo, const float* lse,
                                      const SequenceChunk& r, int64_t H, int64_t Hkv, int64_t D, float* dq,
                                      int64_t lddq) {
  const int64_t ld = kv.ld();
  const float *k = kv.k(), *v = kv.v();
  float *dk = kv.dkv.f32(), *dv = kv.dkv.f32() + kv.width;
  if (r.whole() && kv.base.empty()) {  // writes dk and dv, which nothing has added to yet
    return ring_attention_backward(ContextParallel{}, dout, lddo, q, ldq, k, ld, v, ld, out, ldo, lse,
                                   {r.B, r.T, H, Hkv, D}, dq, lddq, dk, ld, dv, ld);
  }
  ThreadPool& pool = ThreadPool::global();
  const int64_t c = r.c();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor delta, Tensor::empty({r.B * H * c}, DType::kF32, MemCategory::kWorkspace));
  cpu::attention_delta(dout, lddo, out, ldo, r.B, c, H, D, delta.f32(), pool);
  for (int64_t i = 0; i < r.rows(); ++i) std::fill(dq + i * lddq, dq + i * lddq + H * D, 0.0f);
  for (int64_t b = 0; b < r.B; ++b) {
    const int64_t kb = kv.seq_base(b, r.T) * ld, s = kv.seq_offset(b) + r.s, stat = b * H * c;
    const float *dob = dout + b * c * lddo, *qb = q + b * c * ldq;
    float* dqb = dq + b * c * lddq;
    if (s > 0) {
      cpu::attention_backward_accumulate(dob, lddo, qb, ldq, k + kb, ld, v + kb, ld, lse + stat, delta.f32() + stat,
                                         {1, c, s, H, Hkv, D, cpu::AttentionMask::kFull}, dqb, lddq, dk + kb, ld,
                                         dv + kb, ld, pool);
    }
    const int64_t kd = kb + s * ld;
    cpu::attention_backward_accumulate(dob, lddo, qb, ldq, k + kd, ld, v + kd, ld, lse + stat, delta.f32() + stat,
                                       {1, c, c, H, Hkv, D, cpu::AttentionMask::kCausal}, dqb, lddq, dk + kd, ld,
                                       dv + kd, ld, pool);
  }
  return absl::OkStatus();
}

}  // namespace memtrain::model
