#include "model/ulysses.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::model {
namespace {

// The two layouts of one attention call. Token layout: S = slots * sequences rows of p tokens, all heads. Head
// layout: S rows of c = U * p tokens (peer u's piece at [u p, (u+1) p)), H / U query heads and kv / U kv heads,
// kv = max(Hkv, U) counting the repeated copies.
struct Layouts {
  int U;
  int64_t S, p, c, H, Hkv, D, repeat, kv;
  Layouts(const ContextParallel& cp, const RingAttentionDims& s)
      : U(cp.a2a_size), S(s.B), p(s.T), c(s.T * cp.a2a_size), H(s.H), Hkv(s.Hkv), D(s.D),
        repeat(s.Hkv >= cp.a2a_size ? 1 : cp.a2a_size / s.Hkv), kv(s.Hkv * repeat) {
    MEMTRAIN_CHECK_MSG(ulysses_head_mismatch(H, Hkv, U).empty(), ulysses_head_mismatch(H, Hkv, U));
    MEMTRAIN_CHECK_MSG(s.first == nullptr, "packed rows run without context parallelism");
  }
  int64_t n() const { return S * p; }  // token-layout rows (= head-layout rows / U)
  RingAttentionDims head_dims(bool causal) const { return {S, c, H / U, kv / U, D, causal}; }
};

// One all-to-all over the a2a group with per_peer floats to and from every peer: pack(u, dst) writes what goes to
// peer u, unpack(u, src) reads what came from it.
template <class Pack, class Unpack>
absl::Status exchange(const ContextParallel& cp, int64_t per_peer, Pack pack, Unpack unpack) {
  const int U = cp.a2a_size;
  MEMTRAIN_CHECK(cp.a2a_comm != nullptr && cp.a2a_comm->size() == U);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor send, Tensor::empty({U * per_peer}, DType::kF32, MemCategory::kCommunication));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor recv, Tensor::empty({U * per_peer}, DType::kF32, MemCategory::kCommunication));
  for (int u = 0; u < U; ++u) pack(u, send.f32() + u * per_peer);
  const std::vector<int64_t> counts(U, per_peer);
  MEMTRAIN_RETURN_IF_ERROR(cp.a2a_comm->all_to_all_v(send.f32(), counts, recv.f32(), counts, DType::kF32));
  for (int u = 0; u < U; ++u) unpack(u, recv.f32() + u * per_peer);
  return absl::OkStatus();
}

// Token layout x (n rows at stride ld, `heads` real heads of D) -> head layout y (S * c rows of heads * repeat / U
// heads): peer u gets virtual heads [u w, (u+1) w), virtual head h being real head h / repeat.
absl::Status scatter_heads(const ContextParallel& cp, const Layouts& l, const float* x, int64_t ld, int64_t heads,
                           int64_t repeat, float* y) {
  const int64_t hu = heads * repeat / l.U, w = hu * l.D, n = l.n();
  return exchange(
      cp, n * w,
      [&](int u, float* dst) {
        for (int64_t i = 0; i < n; ++i)
          for (int64_t h = 0; h < hu; ++h)
            std::copy_n(x + i * ld + (u * hu + h) / repeat * l.D, l.D, dst + i * w + h * l.D);
      },
      [&](int u, const float* src) {
        for (int64_t i = 0; i < n; ++i)
          std::copy_n(src + i * w, w, y + ((i / l.p) * l.c + u * l.p + i % l.p) * w);
      });
}

// The inverse: head layout y -> token layout x (stride ld), the copies of a repeated head summed in peer order.
absl::Status gather_heads(const ContextParallel& cp, const Layouts& l, const float* y, int64_t heads, int64_t repeat,
                          float* x, int64_t ld) {
  const int64_t hu = heads * repeat / l.U, w = hu * l.D, n = l.n();
  if (repeat > 1) {
    for (int64_t i = 0; i < n; ++i) std::fill_n(x + i * ld, heads * l.D, 0.0f);
  }
  return exchange(
      cp, n * w,
      [&](int u, float* dst) {
        for (int64_t i = 0; i < n; ++i)
          std::copy_n(y + ((i / l.p) * l.c + u * l.p + i % l.p) * w, w, dst + i * w);
      },
      [&](int u, const float* src) {
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t h = 0; h < hu; ++h) {
            float* to = x + i * ld + (u * hu + h) / repeat * l.D;
            const float* from = src + i * w + h * l.D;
            if (repeat == 1) {
              std::copy_n(from, l.D, to);
            } else {
              for (int64_t d = 0; d < l.D; ++d) to[d] += from[d];
            }
          }
        }
      });
}

// Log-sum-exps: token layout (S, H, p) <-> head layout (S, H / U, c).
absl::Status scatter_stats(const ContextParallel& cp, const Layouts& l, const float* lse, float* lse_heads) {
  const int64_t hu = l.H / l.U;
  return exchange(
      cp, l.S * hu * l.p,
      [&](int u, float* dst) {
        for (int64_t b = 0; b < l.S; ++b)
          for (int64_t h = 0; h < hu; ++h) std::copy_n(lse + (b * l.H + u * hu + h) * l.p, l.p, dst + (b * hu + h) * l.p);
      },
      [&](int u, const float* src) {
        for (int64_t b = 0; b < l.S; ++b)
          for (int64_t h = 0; h < hu; ++h)
            std::copy_n(src + (b * hu + h) * l.p, l.p, lse_heads + (b * hu + h) * l.c + u * l.p);
      });
}

absl::Status gather_stats(const ContextParallel& cp, const Layouts& l, const float* lse_heads, float* lse) {
  const int64_t hu = l.H / l.U;
  return exchange(
      cp, l.S * hu * l.p,
      [&](int u, float* dst) {
        for (int64_t b = 0; b < l.S; ++b)
          for (int64_t h = 0; h < hu; ++h)
            std::copy_n(lse_heads + (b * hu + h) * l.c + u * l.p, l.p, dst + (b * hu + h) * l.p);
      },
      [&](int u, const float* src) {
        for (int64_t b = 0; b < l.S; ++b)
          for (int64_t h = 0; h < hu; ++h) std::copy_n(src + (b * hu + h) * l.p, l.p, lse + (b * l.H + u * hu + h) * l.p);
      });
}

absl::StatusOr<Tensor> buffer(int64_t floats) {
  return Tensor::empty({floats}, DType::kF32, MemCategory::kCommunication);
}

}  // namespace

std::string ulysses_head_mismatch(int64_t h, int64_t hkv, int a2a) {
  if (h % a2a != 0) return absl::StrCat(a2a, " all-to-all ranks do not divide the ", h, " attention heads");
  if (hkv % a2a != 0 && a2a % hkv != 0)
    return absl::StrCat(a2a, " all-to-all ranks neither divide nor are a multiple of the ", hkv, " key/value heads");
  return "";
}

absl::Status ulysses_attention_forward(const ContextParallel& cp, const float* q, int64_t ldq, const float* k,
                                       int64_t ldk, const float* v, int64_t ldv, const RingAttentionDims& s,
                                       float* out, int64_t ldo, float* lse) {
  const Layouts l(cp, s);
  const int64_t m = l.n() * l.U, qw = l.H / l.U * l.D, kw = l.kv / l.U * l.D;
  // Everything the call holds is allocated first, so its peak is ulysses_forward_buffer_bytes.
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor qh, buffer(m * qw));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor kh, buffer(m * kw));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor vh, buffer(m * kw));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor outh, buffer(m * qw));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor lseh, buffer(l.S * l.H * l.p));
  MEMTRAIN_RETURN_IF_ERROR(scatter_heads(cp, l, q, ldq, l.H, 1, qh.f32()));
  MEMTRAIN_RETURN_IF_ERROR(scatter_heads(cp, l, k, ldk, l.Hkv, l.repeat, kh.f32()));
  MEMTRAIN_RETURN_IF_ERROR(scatter_heads(cp, l, v, ldv, l.Hkv, l.repeat, vh.f32()));
  MEMTRAIN_RETURN_IF_ERROR(ring_attention_forward(cp.ring(), qh.f32(), qw, kh.f32(), kw, vh.f32(), kw,
                                                  l.head_dims(s.causal), outh.f32(), qw, lseh.f32()));
  MEMTRAIN_RETURN_IF_ERROR(gather_heads(cp, l, outh.f32(), l.H, 1, out, ldo));
  return gather_stats(cp, l, lseh.f32(), lse);
}

absl::Status ulysses_attention_backward(const ContextParallel& cp, const float* dout, int64_t lddo, const float* q,
                                        int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                                        const float* out, int64_t ldo, const float* lse, const RingAttentionDims& s,
                                        float* dq, int64_t lddq, float* dk, int64_t lddk, float* dv, int64_t lddv) {
  const Layouts l(cp, s);
  const int64_t m = l.n() * l.U, qw = l.H / l.U * l.D, kw = l.kv / l.U * l.D;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor qh, buffer(m * qw));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor kh, buffer(m * kw));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor vh, buffer(m * kw));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor outh, buffer(m * qw));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor douth, buffer(m * qw));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor lseh, buffer(l.S * l.H * l.p));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dqh, buffer(m * qw));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dkh, buffer(m * kw));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dvh, buffer(m * kw));
  MEMTRAIN_RETURN_IF_ERROR(scatter_heads(cp, l, q, ldq, l.H, 1, qh.f32()));
  MEMTRAIN_RETURN_IF_ERROR(scatter_heads(cp, l, k, ldk, l.Hkv, l.repeat, kh.f32()));
  MEMTRAIN_RETURN_IF_ERROR(scatter_heads(cp, l, v, ldv, l.Hkv, l.repeat, vh.f32()));
  MEMTRAIN_RETURN_IF_ERROR(scatter_heads(cp, l, out, ldo, l.H, 1, outh.f32()));
  MEMTRAIN_RETURN_IF_ERROR(scatter_heads(cp, l, dout, lddo, l.H, 1, douth.f32()));
  MEMTRAIN_RETURN_IF_ERROR(scatter_stats(cp, l, lse, lseh.f32()));
  MEMTRAIN_RETURN_IF_ERROR(ring_attention_backward(cp.ring(), douth.f32(), qw, qh.f32(), qw, kh.f32(), kw, vh.f32(),
                                                   kw, outh.f32(), qw, lseh.f32(), l.head_dims(s.causal), dqh.f32(),
                                                   qw, dkh.f32(), kw, dvh.f32(), kw));
  MEMTRAIN_RETURN_IF_ERROR(gather_heads(cp, l, dqh.f32(), l.H, 1, dq, lddq));
  MEMTRAIN_RETURN_IF_ERROR(gather_heads(cp, l, dkh.f32(), l.Hkv, l.repeat, dk, lddk));
  return gather_heads(cp, l, dvh.f32(), l.Hkv, l.repeat, dv, lddv);
}

int64_t ulysses_forward_buffer_bytes(const ContextParallel& cp, const RingAttentionDims& s) {
  const Layouts l(cp, s);
  const int64_t n = l.n(), qw = l.H * l.D, kw = l.kv * l.D;  // token-layout widths of the head tensors
  const int64_t held = 2 * n * qw + 2 * n * kw + l.S * l.H * l.p;
  // An exchange holds send and receive buffers of the tensor it moves; q and out are the largest.
  return 4 * held + std::max(4 * 2 * n * qw, ring_attention_forward_buffer_bytes(cp.ring(), l.head_dims(s.causal)));
}

int64_t ulysses_backward_buffer_bytes(const ContextParallel& cp, const RingAttentionDims& s) {
  const Layouts l(cp, s);
  const int64_t n = l.n(), qw = l.H * l.D, kw = l.kv * l.D;
  const int64_t held = 4 * n * qw + 4 * n * kw + l.S * l.H * l.p;
  return 4 * held + std::max(4 * 2 * n * qw, ring_attention_backward_buffer_bytes(cp.ring(), l.head_dims(s.causal)));
}

}  // namespace memtrain::model
