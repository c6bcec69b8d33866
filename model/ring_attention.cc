#include "model/ring_attention.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

#include "core/cpu/attention.h"
#include "core/status.h"
#include "model/ulysses.h"

namespace memtrain::model {
namespace {

constexpr int kKeyValueTag = 31, kGradTag = 32;  // both flow to the same neighbour; tags keep them apart

// The mask between query slot qs of rank qr and key slot ks of rank kr, or nothing when no query sees any key.
std::optional<cpu::AttentionMask> mask_between(const ContextParallel& cp, bool causal, int qr, int qs, int kr,
                                               int ks) {
  if (!causal) return cpu::AttentionMask::kFull;
  const int64_t qa = cp.chunk_of(qr, qs), ka = cp.chunk_of(kr, ks);
  if (ka < qa) return cpu::AttentionMask::kFull;
  if (ka == qa) return cpu::AttentionMask::kCausal;
  return std::nullopt;
}

// The ring's block: this rank's keys then values, rows of Hkv * D floats back to back.
struct Ring {
  const ContextParallel& cp;
  const RingAttentionDims& s;
  int64_t per_slot, slot_rows, rows, kvw;
  int to, from;
  Ring(const ContextParallel& c, const RingAttentionDims& d)
      : cp(c), s(d), per_slot(d.B / c.slots), slot_rows(d.B / c.slots * d.T), rows(d.B * d.T), kvw(d.Hkv * d.D),
        to((c.rank + 1) % c.size), from((c.rank + c.size - 1) % c.size) {
    MEMTRAIN_CHECK_MSG(d.B % c.slots == 0, "ring attention: the local batch holds whole slots");
    MEMTRAIN_CHECK(c.size == 1 || c.comm != nullptr);
  }
  int64_t block_floats() const { return 2 * rows * kvw; }
  absl::StatusOr<Tensor> buffer() const {
    return Tensor::empty({block_floats()}, DType::kF32, MemCategory::kCommunication);
  }
  void pack(const float* k, int64_t ldk, const float* v, int64_t ldv, float* dst) const {
    for (int64_t i = 0; i < rows; ++i) {
      std::copy_n(k + i * ldk, kvw, dst + i * kvw);
      std::copy_n(v + i * ldv, kvw, dst + (rows + i) * kvw);
    }
  }
  cpu::AttentionDims block_dims(cpu::AttentionMask mask) const {
    return {per_slot, s.T, s.T, s.H, s.Hkv, s.D, mask};
  }
  // Starts passing `cur` on to the next rank and receiving the previous rank's block into `next`.
  std::pair<parallel::CommHandle, parallel::CommHandle> pass(const Tensor& cur, Tensor& next, int tag) const {
    return {cp.comm->send_async(cur.f32(), cur.numel(), DType::kF32, to, tag),
            cp.comm->recv_async(next.f32(), next.numel(), DType::kF32, from, tag)};
  }
};

absl::Status wait_both(std::pair<parallel::CommHandle, parallel::CommHandle>& h) {
  MEMTRAIN_RETURN_IF_ERROR(h.first.wait());
  return h.second.wait();
}

}  // namespace

absl::Status ring_attention_forward(const ContextParallel& cp, const float* q, int64_t ldq, const float* k,
                                    int64_t ldk, const float* v, int64_t ldv, const RingAttentionDims& s,
                                    float* out, int64_t ldo, float* lse) {
  if (cp.a2a_size > 1) return ulysses_attention_forward(cp, q, ldq, k, ldk, v, ldv, s, out, ldo, lse);
  ThreadPool& pool = ThreadPool::global();
  if (cp.size == 1 && s.causal) {
    cpu::attention_forward(q, ldq, k, ldk, v, ldv, s.B, s.T, s.H, s.Hkv, s.D, out, ldo, lse, pool, s.first);
    return absl::OkStatus();
  }
  MEMTRAIN_CHECK_MSG(s.first == nullptr, "packed rows run without context parallelism");
  const Ring ring(cp, s);
  std::fill(lse, lse + s.B * s.H * s.T, -std::numeric_limits<float>::infinity());
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor cur, ring.buffer());
  Tensor next;
  if (cp.size > 1) {
    MEMTRAIN_ASSIGN_OR_RETURN(next, ring.buffer());
  }
  ring.pack(k, ldk, v, ldv, cur.f32());
  for (int step = 0; step < cp.size; ++step) {
    const int src = (cp.rank - step + cp.size) % cp.size;  // whose block `cur` is
    std::pair<parallel::CommHandle, parallel::CommHandle> passing;
    if (step + 1 < cp.size) passing = ring.pass(cur, next, kKeyValueTag);
    for (int qs = 0; qs < cp.slots; ++qs) {
      for (int ks = 0; ks < cp.slots; ++ks) {
        const std::optional<cpu::AttentionMask> mask = mask_between(cp, s.causal, cp.rank, qs, src, ks);
        if (!mask) continue;
        const float* kb = cur.f32() + ks * ring.slot_rows * ring.kvw;
        cpu::attention_forward_merge(q + qs * ring.slot_rows * ldq, ldq, kb, ring.kvw, kb + ring.rows * ring.kvw,
                                     ring.kvw, ring.block_dims(*mask), out + qs * ring.slot_rows * ldo, ldo,
                                     lse + qs * ring.per_slot * s.H * s.T, pool);
        passing.first.test();  // MPI moves data only inside its calls
        passing.second.test();
      }
    }
    MEMTRAIN_RETURN_IF_ERROR(wait_both(passing));
    std::swap(cur, next);
  }
  return absl::OkStatus();
}

absl::Status ring_attention_backward(const ContextParallel& cp, const float* dout, int64_t lddo, const float* q,
                                     int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                                     const float* out, int64_t ldo, const float* lse, const RingAttentionDims& s,
                                     float* dq, int64_t lddq, float* dk, int64_t lddk, float* dv, int64_t lddv) {
  if (cp.a2a_size > 1) {
    return ulysses_attention_backward(cp, dout, lddo, q, ldq, k, ldk, v, ldv, out, ldo, lse, s, dq, lddq, dk, lddk,
                                      dv, lddv);
  }
  ThreadPool& pool = ThreadPool::global();
  if (cp.size == 1 && s.causal) {
    cpu::attention_backward(dout, lddo, q, ldq, k, ldk, v, ldv, out, ldo, lse, s.B, s.T, s.H, s.Hkv, s.D, dq, lddq,
                            dk, lddk, dv, lddv, pool, s.first);
    return absl::OkStatus();
  }
  const Ring ring(cp, s);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor delta, Tensor::empty({s.B * s.H * s.T}, DType::kF32, MemCategory::kWorkspace));
  cpu::attention_delta(dout, lddo, out, ldo, s.B, s.T, s.H, s.D, delta.f32(), pool);
  for (int64_t i = 0; i < ring.rows; ++i) std::fill(dq + i * lddq, dq + i * lddq + s.H * s.D, 0.0f);
  // Key/value blocks as in forward; a block's gradient is summed in `work`, plus what the ranks before added
  // (`in`), and handed on from `sending`.
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor cur, ring.buffer());
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor work, ring.buffer());
  Tensor next, in, sending;
  if (cp.size > 1) {
    MEMTRAIN_ASSIGN_OR_RETURN(next, ring.buffer());
    MEMTRAIN_ASSIGN_OR_RETURN(in, ring.buffer());
    MEMTRAIN_ASSIGN_OR_RETURN(sending, ring.buffer());
  }
  ring.pack(k, ldk, v, ldv, cur.f32());
  parallel::CommHandle grads_out;
  for (int step = 0; step < cp.size; ++step) {
    const int src = (cp.rank - step + cp.size) % cp.size;
    std::pair<parallel::CommHandle, parallel::CommHandle> passing;
    if (step + 1 < cp.size) passing = ring.pass(cur, next, kKeyValueTag);
    parallel::CommHandle grads_in;
    if (step > 0) grads_in = cp.comm->recv_async(in.f32(), in.numel(), DType::kF32, ring.from, kGradTag);
    std::fill(work.f32(), work.f32() + work.numel(), 0.0f);
    for (int qs = 0; qs < cp.slots; ++qs) {
      for (int ks = 0; ks < cp.slots; ++ks) {
        const std::optional<cpu::AttentionMask> mask = mask_between(cp, s.causal, cp.rank, qs, src, ks);
        if (!mask) continue;
        const int64_t kv_off = ks * ring.slot_rows * ring.kvw, q_rows = qs * ring.slot_rows;
        const int64_t stat_off = qs * ring.per_slot * s.H * s.T;
        cpu::attention_backward_accumulate(
            dout + q_rows * lddo, lddo, q + q_rows * ldq, ldq, cur.f32() + kv_off, ring.kvw,
            cur.f32() + ring.rows * ring.kvw + kv_off, ring.kvw, lse + stat_off, delta.f32() + stat_off,
            ring.block_dims(*mask), dq + q_rows * lddq, lddq, work.f32() + kv_off, ring.kvw,
            work.f32() + ring.rows * ring.kvw + kv_off, ring.kvw, pool);
        passing.first.test();
        passing.second.test();
        grads_in.test();
        grads_out.test();
      }
    }
    if (cp.size > 1) {
      if (step > 0) {
        MEMTRAIN_RETURN_IF_ERROR(grads_in.wait());
        const float* add = in.f32();
        float* acc = work.f32();
        for (int64_t i = 0; i < work.numel(); ++i) acc[i] += add[i];
      }
      MEMTRAIN_RETURN_IF_ERROR(grads_out.wait());  // the previous block's gradient has left `sending`
      std::swap(work, sending);
      grads_out = cp.comm->send_async(sending.f32(), sending.numel(), DType::kF32, ring.to, kGradTag);
    }
    MEMTRAIN_RETURN_IF_ERROR(wait_both(passing));
    std::swap(cur, next);
  }
  // After the last step the previous rank holds this rank's block with every rank's part added: it comes home.
  const Tensor* total = &work;
  if (cp.size > 1) {
    MEMTRAIN_RETURN_IF_ERROR(cp.comm->recv(in.f32(), in.numel(), DType::kF32, ring.from, kGradTag));
    MEMTRAIN_RETURN_IF_ERROR(grads_out.wait());
    total = &in;
  }
  const float* g = total->f32();
  for (int64_t i = 0; i < ring.rows; ++i) {
    std::copy_n(g + i * ring.kvw, ring.kvw, dk + i * lddk);
    std::copy_n(g + (ring.rows + i) * ring.kvw, ring.kvw, dv + i * lddv);
  }
  return absl::OkStatus();
}

int64_t ring_attention_forward_buffer_bytes(const ContextParallel& cp, const RingAttentionDims& s) {
  if (cp.a2a_size > 1) return ulysses_forward_buffer_bytes(cp, s);
  if (cp.size == 1 && s.causal) return 0;
  return (cp.size > 1 ? 2 : 1) * 4 * (2 * s.B * s.T * s.Hkv * s.D);
}

int64_t ring_attention_backward_buffer_bytes(const ContextParallel& cp, const RingAttentionDims& s) {
  if (cp.a2a_size > 1) return ulysses_backward_buffer_bytes(cp, s);
  if (cp.size == 1 && s.causal) return 0;
  return (cp.size > 1 ? 5 : 2) * 4 * (2 * s.B * s.T * s.Hkv * s.D);
}

}  // namespace memtrain::model
