// Blockwise causal attention: score tiles of kBlock x kBlock live only in per-task scratch. Forward keeps a running
// max and sum per query row (online softmax); backward recomputes the probabilities from the saved log-sum-exp.
#include "core/cpu/attention.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/cpu/gemm.h"
#include "core/cpu/vec_math.h"
#include "core/status.h"

namespace memtrain::cpu {
namespace {

// Query and key blocks share size and alignment, so a processed key block is either fully at or below the
// diagonal, or is the diagonal block itself, and every query row sees at least one key in each block it touches.
constexpr int64_t kBlock = 64;

std::atomic<int64_t> g_scratch_peak{0};

// Per-thread scratch that only grows. Callers size it by kBlock, D and (backward) T, never by T^2.
float* scratch(int64_t n) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  int64_t prev = g_scratch_peak.load(std::memory_order_relaxed);
  while (prev < n && !g_scratch_peak.compare_exchange_weak(prev, n, std::memory_order_relaxed)) {
  }
  return buf.data();
}

float row_max(const float* s, int64_t n) {
  __m256 acc = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t j = 0;
  for (; j + vec::kWidth <= n; j += vec::kWidth) acc = _mm256_max_ps(acc, _mm256_loadu_ps(s + j));
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  float mx = _mm_cvtss_f32(m);
  for (; j < n; ++j) mx = std::max(mx, s[j]);
  return mx;
}

// s[j] = exp(s[j] - shift) for j < n and 0 for n <= j < width (the causal mask); returns the sum of the first n.
// The tail goes through the same vector exp so every element is rounded the same way; a NaN score stays NaN.
float exp_shift_row(float* s, int64_t n, int64_t width, float shift) {
  const __m256 sh = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t j = 0; j < n; j += vec::kWidth) {
    const __m256 p = vec::exp(_mm256_sub_ps(vec::load(s + j, n - j), sh));
    const __m256 live = _mm256_castsi256_ps(vec::tail_mask(n - j));  // all lanes on a full vector
    acc = _mm256_add_ps(acc, _mm256_and_ps(p, live));
    vec::store(s + j, n - j, p);
  }
  for (int64_t j = n; j < width; ++j) s[j] = 0.0f;
  return vec::hsum(acc);
}

// Packed examples: scores of keys before the query's first one (row[0, lo)) become -inf, so exp gives exact zeros.
void mask_before(float* row, int64_t lo) {
  std::fill(row, row + lo, -std::numeric_limits<float>::infinity());
}

void check_dims(const AttentionDims& s) {
  MEMTRAIN_CHECK(s.B >= 0 && s.Tq >= 0 && s.Tk >= 0 && s.H >= 1 && s.Hkv >= 1 && s.D >= 1);
  MEMTRAIN_CHECK_MSG(s.H % s.Hkv == 0, "attention: H must be a multiple of Hkv");
  MEMTRAIN_CHECK_MSG(s.mask == AttentionMask::kFull || s.Tq == s.Tk, "attention: a causal block is square");
  MEMTRAIN_CHECK_MSG(s.first == nullptr || s.mask == AttentionMask::kCausal, "attention: packing needs a causal block");
}

// The forward both entry points share. merge = false writes out and lse; merge = true folds this key block's
// attention into the normalised (out, lse) of the keys seen before (lse = -inf where none were).
void forward_impl(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                  const AttentionDims& s, float* out, int64_t ldo, float* lse, bool merge, ThreadPool& pool) {
  check_dims(s);
  MEMTRAIN_CHECK(ldq >= s.H * s.D && ldk >= s.Hkv * s.D && ldv >= s.Hkv * s.D && ldo >= s.H * s.D);
  if (s.B == 0 || s.Tq == 0 || s.Tk == 0) return;
  const int64_t B = s.B, Tq = s.Tq, Tk = s.Tk, H = s.H, D = s.D, rep = s.H / s.Hkv;
  const bool causal = s.mask == AttentionMask::kCausal;
  const int64_t nqb = (Tq + kBlock - 1) / kBlock;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const float neg_inf = -std::numeric_limits<float>::infinity();

  // One task per (b, h, query block). Tasks run latest query block first: those see the most keys, and taking
  // them early evens out the finish times. Each task's result is independent of which thread runs it.
  pool.run(B * H * nqb, [&](int64_t task) {
    const int64_t qb = nqb - 1 - task / (B * H);
    const int64_t b = (task % (B * H)) / H;
    const int64_t h = task % H;
    const int64_t g = h / rep;
    const int64_t q0 = qb * kBlock;
    const int64_t mq = std::min(kBlock, Tq - q0);

    float* sc = scratch(kBlock * kBlock + kBlock * D + 2 * kBlock);
    float* o = sc + kBlock * kBlock;  // unnormalised output rows, stride D
    float* m = o + kBlock * D;        // running max of each row's scores
    float* l = m + kBlock;            // running sum of exp(score - m)
    std::fill(o, o + mq * D, 0.0f);
    std::fill(m, m + mq, neg_inf);
    std::fill(l, l + mq, 0.0f);

    const float* qp = q + (b * Tq + q0) * ldq + h * D;
    const int32_t* first = s.first ? s.first + b * Tq + q0 : nullptr;
    const int64_t k_end = causal ? q0 + mq : Tk;  // causal: key blocks above the diagonal are never touched
    int64_t k_begin = 0;                          // packed: nor blocks before every query's example
    if (first) k_begin = *std::min_element(first, first + mq) / kBlock * kBlock;
    for (int64_t k0 = k_begin; k0 < k_end; k0 += kBlock) {
      const int64_t nk = std::min(kBlock, Tk - k0);
      const float* kp = k + (b * Tk + k0) * ldk + g * D;
      const float* vp = v + (b * Tk + k0) * ldv + g * D;
      sgemm_serial(false, true, mq, nk, D, scale, qp, ldq, kp, ldk, 0.0f, sc, kBlock);
      for (int64_t i = 0; i < mq; ++i) {
        const int64_t n = causal ? std::min(nk, q0 + i - k0 + 1) : nk;  // keys the query sees
        float* row = sc + i * kBlock;
        const int64_t lo = first ? std::max<int64_t>(0, first[i] - k0) : 0;
        if (lo >= n) {  // none of this block's keys: it adds nothing to the row
          std::fill(row, row + nk, 0.0f);
          continue;
        }
        mask_before(row, lo);
        const float m_new = std::max(m[i], row_max(row, n));
        const float alpha = m[i] == neg_inf ? 0.0f : std::exp(m[i] - m_new);
        l[i] = l[i] * alpha + exp_shift_row(row, n, nk, m_new);
        m[i] = m_new;
        if (alpha != 1.0f) {
          float* orow = o + i * D;
          for (int64_t d = 0; d < D; ++d) orow[d] *= alpha;
        }
      }
      sgemm_serial(false, false, mq, D, nk, 1.0f, sc, kBlock, vp, ldv, 1.0f, o, D);
    }

    float* lse_row = lse + (b * H + h) * Tq + q0;
    for (int64_t i = 0; i < mq; ++i) {
      float* dst = out + (b * Tq + q0 + i) * ldo + h * D;
      const float* orow = o + i * D;
      const float lse_new = m[i] + std::log(l[i]);
      if (!merge || lse_row[i] == neg_inf) {
        for (int64_t d = 0; d < D; ++d) dst[d] = orow[d] / l[i];
        lse_row[i] = lse_new;
        continue;
      }
      // out = (e^lse_old out_old + e^lse_new out_new) / (e^lse_old + e^lse_new), in shifted form.
      const float hi = std::max(lse_row[i], lse_new);
      const float w_old = std::exp(lse_row[i] - hi), w_new = std::exp(lse_new - hi);
      const float total = w_old + w_new;
      const float a = w_old / total, c = w_new / (total * l[i]);
      for (int64_t d = 0; d < D; ++d) dst[d] = a * dst[d] + c * orow[d];
      lse_row[i] = hi + std::log(total);
    }
  });
}

// The backward both entry points share. delta: (B, H, Tq) rowsum(dout * out), or null to compute it here from
// dout and out. accumulate: add into dq, dk, dv instead of overwriting them.
void backward_impl(const float* dout, int64_t lddo, const float* q, int64_t ldq, const float* k, int64_t ldk,
                   const float* v, int64_t ldv, const float* out, int64_t ldo, const float* lse, const float* delta,
                   const AttentionDims& s, float* dq, int64_t lddq, float* dk, int64_t lddk, float* dv, int64_t lddv,
                   bool accumulate, ThreadPool& pool) {
  check_dims(s);
  MEMTRAIN_CHECK(ldq >= s.H * s.D && ldk >= s.Hkv * s.D && ldv >= s.Hkv * s.D && lddo >= s.H * s.D);
  MEMTRAIN_CHECK(lddq >= s.H * s.D && lddk >= s.Hkv * s.D && lddv >= s.Hkv * s.D);
  if (s.B == 0 || s.Tq == 0 || s.Tk == 0) return;
  const int64_t B = s.B, Tq = s.Tq, Tk = s.Tk, H = s.H, Hkv = s.Hkv, D = s.D, rep = s.H / s.Hkv;
  const bool causal = s.mask == AttentionMask::kCausal;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));

  // One task per (b, kv head): it owns dk/dv of that kv head and dq of the rep query heads sharing it, so every
  // sum runs in one fixed order on one thread (bitwise the same for any pool size) and nothing needs a lock.
  pool.run(B * Hkv, [&](int64_t task) {
    const int64_t b = task / Hkv;
    const int64_t g = task % Hkv;

    float* p = scratch(2 * kBlock * kBlock + 2 * kBlock * D + (delta ? 0 : rep * Tq));
    float* ds = p + kBlock * kBlock;       // dP, then dS in place
    float* dk_acc = ds + kBlock * kBlock;  // this key block's dK, summed over heads and query blocks
    float* dv_acc = dk_acc + kBlock * D;
    float* own_delta = dv_acc + kBlock * D;  // (rep, Tq) when delta is not given
    auto delta_of = [&](int64_t r) { return delta ? delta + (b * H + g * rep + r) * Tq : own_delta + r * Tq; };

    for (int64_t r = 0; r < rep; ++r) {
      const int64_t h = g * rep + r;
      for (int64_t t = 0; t < Tq; ++t) {
        if (!delta) {
          const float* dor = dout + (b * Tq + t) * lddo + h * D;
          const float* orow = out + (b * Tq + t) * ldo + h * D;
          float acc = 0.0f;
          for (int64_t d = 0; d < D; ++d) acc += dor[d] * orow[d];
          own_delta[r * Tq + t] = acc;
        }
        if (!accumulate) std::fill(dq + (b * Tq + t) * lddq + h * D, dq + (b * Tq + t) * lddq + (h + 1) * D, 0.0f);
      }
    }

    // Key blocks outer (FlashAttention-2 backward): dK, dV of a block finish in scratch, then are stored once;
    // dQ rows are summed in place over key blocks in increasing order.
    for (int64_t k0 = 0; k0 < Tk; k0 += kBlock) {
      const int64_t nk = std::min(kBlock, Tk - k0);
      const float* kp = k + (b * Tk + k0) * ldk + g * D;
      const float* vp = v + (b * Tk + k0) * ldv + g * D;
      std::fill(dk_acc, dk_acc + nk * D, 0.0f);
      std::fill(dv_acc, dv_acc + nk * D, 0.0f);
      for (int64_t r = 0; r < rep; ++r) {
        const int64_t h = g * rep + r;
        const float* lse_h = lse + (b * H + h) * Tq;
        const float* delta_h = delta_of(r);
        for (int64_t q0 = causal ? k0 : 0; q0 < Tq; q0 += kBlock) {  // causal: query blocks at or below the diagonal
          const int64_t mq = std::min(kBlock, Tq - q0);
          const float* qp = q + (b * Tq + q0) * ldq + h * D;
          const float* dop = dout + (b * Tq + q0) * lddo + h * D;
          float* dqp = dq + (b * Tq + q0) * lddq + h * D;
          // P = exp(scale * Q K^T - lse), masked entries exactly 0.
          sgemm_serial(false, true, mq, nk, D, scale, qp, ldq, kp, ldk, 0.0f, p, kBlock);
          for (int64_t i = 0; i < mq; ++i) {
            int64_t n = causal ? std::min(nk, q0 + i - k0 + 1) : nk;
            const int64_t lo = s.first ? std::max<int64_t>(0, s.first[b * Tq + q0 + i] - k0) : 0;
            if (lo >= n) n = 0;  // a query of a later example: the whole row is 0
            mask_before(p + i * kBlock, std::min(lo, n));
            exp_shift_row(p + i * kBlock, n, nk, lse_h[q0 + i]);
          }
          sgemm_serial(true, false, nk, D, mq, 1.0f, p, kBlock, dop, lddo, 1.0f, dv_acc, D);  // dV += P^T dO
          sgemm_serial(false, true, mq, nk, D, 1.0f, dop, lddo, vp, ldv, 0.0f, ds, kBlock);  // dP = dO V^T
          // dS = P * (dP - delta), with the score scale folded in so the two products below need no alpha.
          for (int64_t i = 0; i < mq; ++i) {
            const float di = delta_h[q0 + i];
            const float* prow = p + i * kBlock;
            float* srow = ds + i * kBlock;
            for (int64_t j = 0; j < nk; ++j) srow[j] = prow[j] * (srow[j] - di) * scale;
          }
          sgemm_serial(false, false, mq, D, nk, 1.0f, ds, kBlock, kp, ldk, 1.0f, dqp, lddq);   // dQ += dS K
          sgemm_serial(true, false, nk, D, mq, 1.0f, ds, kBlock, qp, ldq, 1.0f, dk_acc, D);   // dK += dS^T Q
        }
      }
      for (int64_t j = 0; j < nk; ++j) {
        float* dkr = dk + (b * Tk + k0 + j) * lddk + g * D;
        float* dvr = dv + (b * Tk + k0 + j) * lddv + g * D;
        if (!accumulate) {
          std::memcpy(dkr, dk_acc + j * D, sizeof(float) * D);
          std::memcpy(dvr, dv_acc + j * D, sizeof(float) * D);
          continue;
        }
        for (int64_t d = 0; d < D; ++d) dkr[d] += dk_acc[j * D + d], dvr[d] += dv_acc[j * D + d];
      }
    }
  });
}

}  // namespace

void attention_forward(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                       int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, float* out, int64_t ldo,
                       float* lse, ThreadPool& pool, const int32_t* first) {
  forward_impl(q, ldq, k, ldk, v, ldv, {B, T, T, H, Hkv, D, AttentionMask::kCausal, first}, out, ldo, lse, false,
               pool);
}

void attention_backward(const float* dout, int64_t lddo, const float* q, int64_t ldq, const float* k, int64_t ldk,
                        const float* v, int64_t ldv, const float* out, int64_t ldo, const float* lse,
                        int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                        float* dq, int64_t lddq, float* dk, int64_t lddk, float* dv, int64_t lddv, ThreadPool& pool,
                        const int32_t* first) {
  MEMTRAIN_CHECK(ldo >= H * D);
  backward_impl(dout, lddo, q, ldq, k, ldk, v, ldv, out, ldo, lse, nullptr,
                {B, T, T, H, Hkv, D, AttentionMask::kCausal, first}, dq, lddq, dk, lddk, dv, lddv, false, pool);
}

void attention_forward_merge(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                             const AttentionDims& dims, float* out, int64_t ldo, float* lse, ThreadPool& pool) {
  forward_impl(q, ldq, k, ldk, v, ldv, dims, out, ldo, lse, true, pool);
}

void attention_delta(const float* dout, int64_t lddo, const float* out, int64_t ldo, int64_t B, int64_t T, int64_t H,
                     int64_t D, float* delta, ThreadPool& pool) {
  MEMTRAIN_CHECK(lddo >= H * D && ldo >= H * D);
  pool.parallel_for(B * H, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / H, h = i % H;
      for (int64_t t = 0; t < T; ++t) {
        const float* dor = dout + (b * T + t) * lddo + h * D;
        const float* orow = out + (b * T + t) * ldo + h * D;
        float acc = 0.0f;  // the order attention_backward sums in
        for (int64_t d = 0; d < D; ++d) acc += dor[d] * orow[d];
        delta[i * T + t] = acc;
      }
    }
  });
}

void attention_backward_accumulate(const float* dout, int64_t lddo, const float* q, int64_t ldq, const float* k,
                                   int64_t ldk, const float* v, int64_t ldv, const float* lse, const float* delta,
                                   const AttentionDims& dims, float* dq, int64_t lddq, float* dk, int64_t lddk,
                                   float* dv, int64_t lddv, ThreadPool& pool) {
  MEMTRAIN_CHECK(delta != nullptr);
  backward_impl(dout, lddo, q, ldq, k, ldk, v, ldv, nullptr, 0, lse, delta, dims, dq, lddq, dk, lddk, dv, lddv, true,
                pool);
}

int64_t attention_scratch_floats_peak() { return g_scratch_peak.load(std::memory_order_relaxed); }
void attention_reset_scratch_peak() { g_scratch_peak.store(0, std::memory_order_relaxed); }

}  // namespace memtrain::cpu
