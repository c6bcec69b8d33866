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

absl::Status chunk_attention_forward(const float* q, int64_t ldq, const StreamKeyValues& kv, const SequenceChunk& r,
                                     int64_t H, int64_t Hkv, int64_t D, float* out, int64_t ldo, float* lse) {
  const int64_t ld = kv.ld();
  if (r.whole()) {
    return ring_attention_forward(ContextParallel{}, q, ldq, kv.k(), ld, kv.v(), ld, {r.B, r.T, H, Hkv, D}, out, ldo,
                                  lse);
  }
  ThreadPool& pool = ThreadPool::global();
  const int64_t c = r.c();
  std::fill(lse, lse + r.B * H * c, -std::numeric_limits<float>::infinity());
  for (int64_t b = 0; b < r.B; ++b) {
    const float* qb = q + b * c * ldq;
    const float *k = kv.k() + b * r.T * ld, *v = kv.v() + b * r.T * ld;
    float *ob = out + b * c * ldo, *lb = lse + b * H * c;
    if (r.s > 0) {
      cpu::attention_forward_merge(qb, ldq, k, ld, v, ld, {1, c, r.s, H, Hkv, D, cpu::AttentionMask::kFull}, ob, ldo,
                                   lb, pool);
    }
    cpu::attention_forward_merge(qb, ldq, k + r.s * ld, ld, v + r.s * ld, ld,
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
  if (r.whole()) {  // writes dk and dv, which nothing has added to yet
    return ring_attention_backward(ContextParallel{}, dout, lddo, q, ldq, k, ld, v, ld, out, ldo, lse,
                                   {r.B, r.T, H, Hkv, D}, dq, lddq, dk, ld, dv, ld);
  }
  ThreadPool& pool = ThreadPool::global();
  const int64_t c = r.c();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor delta, Tensor::empty({r.B * H * c}, DType::kF32, MemCategory::kWorkspace));
  cpu::attention_delta(dout, lddo, out, ldo, r.B, c, H, D, delta.f32(), pool);
  for (int64_t i = 0; i < r.rows(); ++i) std::fill(dq + i * lddq, dq + i * lddq + H * D, 0.0f);
  for (int64_t b = 0; b < r.B; ++b) {
    const int64_t kb = b * r.T * ld, stat = b * H * c;
    const float *dob = dout + b * c * lddo, *qb = q + b * c * ldq;
    float* dqb = dq + b * c * lddq;
    if (r.s > 0) {
      cpu::attention_backward_accumulate(dob, lddo, qb, ldq, k + kb, ld, v + kb, ld, lse + stat, delta.f32() + stat,
                                         {1, c, r.s, H, Hkv, D, cpu::AttentionMask::kFull}, dqb, lddq, dk + kb, ld,
                                         dv + kb, ld, pool);
    }
    const int64_t kd = kb + r.s * ld;
    cpu::attention_backward_accumulate(dob, lddo, qb, ldq, k + kd, ld, v + kd, ld, lse + stat, delta.f32() + stat,
                                       {1, c, c, H, Hkv, D, cpu::AttentionMask::kCausal}, dqb, lddq, dk + kd, ld,
                                       dv + kd, ld, pool);
  }
  return absl::OkStatus();
}

}  // namespace memtrain::model
