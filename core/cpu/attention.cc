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

void check_shapes(int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D) {
  MEMTRAIN_CHECK(B >= 0 && T >= 0 && H >= 1 && Hkv >= 1 && D >= 1);
  MEMTRAIN_CHECK_MSG(H % Hkv == 0, "attention: H must be a multiple of Hkv");
}

}  // namespace

void attention_forward(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
                       int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, float* out, int64_t ldo,
                       float* lse, ThreadPool& pool) {
  check_shapes(B, T, H, Hkv, D);
  MEMTRAIN_CHECK(ldq >= H * D && ldk >= Hkv * D && ldv >= Hkv * D && ldo >= H * D);
  if (B == 0 || T == 0) return;
  const int64_t rep = H / Hkv;
  const int64_t nqb = (T + kBlock - 1) / kBlock;
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
    const int64_t mq = std::min(kBlock, T - q0);

    float* s = scratch(kBlock * kBlock + kBlock * D + 2 * kBlock);
    float* o = s + kBlock * kBlock;  // unnormalised output rows, stride D
    float* m = o + kBlock * D;       // running max of each row's scores
    float* l = m + kBlock;           // running sum of exp(score - m)
    std::fill(o, o + mq * D, 0.0f);
    std::fill(m, m + mq, neg_inf);
    std::fill(l, l + mq, 0.0f);

    const float* qp = q + (b * T + q0) * ldq + h * D;
    for (int64_t k0 = 0; k0 < q0 + mq; k0 += kBlock) {  // key blocks above the diagonal are never touched
      const int64_t nk = std::min(kBlock, T - k0);
      const float* kp = k + (b * T + k0) * ldk + g * D;
      const float* vp = v + (b * T + k0) * ldv + g * D;
      sgemm_serial(false, true, mq, nk, D, scale, qp, ldq, kp, ldk, 0.0f, s, kBlock);
      for (int64_t i = 0; i < mq; ++i) {
        const int64_t n = std::min(nk, q0 + i - k0 + 1);  // keys at or before the query (causal mask)
        float* row = s + i * kBlock;
        const float m_new = std::max(m[i], row_max(row, n));
        const float alpha = m[i] == neg_inf ? 0.0f : std::exp(m[i] - m_new);
        l[i] = l[i] * alpha + exp_shift_row(row, n, nk, m_new);
        m[i] = m_new;
        if (alpha != 1.0f) {
          float* orow = o + i * D;
          for (int64_t d = 0; d < D; ++d) orow[d] *= alpha;
        }
      }
      sgemm_serial(false, false, mq, D, nk, 1.0f, s, kBlock, vp, ldv, 1.0f, o, D);
    }

    float* lse_row = lse + (b * H + h) * T + q0;
    for (int64_t i = 0; i < mq; ++i) {
      float* dst = out + (b * T + q0 + i) * ldo + h * D;
      const float* orow = o + i * D;
      for (int64_t d = 0; d < D; ++d) dst[d] = orow[d] / l[i];
      lse_row[i] = m[i] + std::log(l[i]);
    }
  });
}

void attention_backward(const float* dout, int64_t lddo, const float* q, int64_t ldq, const float* k, int64_t ldk,
                        const float* v, int64_t ldv, const float* out, int64_t ldo, const float* lse,
                        int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                        float* dq, int64_t lddq, float* dk, int64_t lddk, float* dv, int64_t lddv, ThreadPool& pool) {
  check_shapes(B, T, H, Hkv, D);
  MEMTRAIN_CHECK(ldq >= H * D && ldk >= Hkv * D && ldv >= Hkv * D && ldo >= H * D && lddo >= H * D);
  MEMTRAIN_CHECK(lddq >= H * D && lddk >= Hkv * D && lddv >= Hkv * D);
  if (B == 0 || T == 0) return;
  const int64_t rep = H / Hkv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));

  // One task per (b, kv head): it owns dk/dv of that kv head and dq of the rep query heads sharing it, so every
  // sum runs in one fixed order on one thread (bitwise the same for any pool size) and nothing needs a lock.
  pool.run(B * Hkv, [&](int64_t task) {
    const int64_t b = task / Hkv;
    const int64_t g = task % Hkv;

    float* p = scratch(2 * kBlock * kBlock + 2 * kBlock * D + rep * T);
    float* ds = p + kBlock * kBlock;     // dP, then dS in place
    float* dk_acc = ds + kBlock * kBlock;  // this key block's dK, summed over heads and query blocks
    float* dv_acc = dk_acc + kBlock * D;
    float* delta = dv_acc + kBlock * D;  // (rep, T): rowsum(dO * O), the softmax backward's correction

    for (int64_t r = 0; r < rep; ++r) {
      const int64_t h = g * rep + r;
      for (int64_t t = 0; t < T; ++t) {
        const float* dor = dout + (b * T + t) * lddo + h * D;
        const float* orow = out + (b * T + t) * ldo + h * D;
        float acc = 0.0f;
        for (int64_t d = 0; d < D; ++d) acc += dor[d] * orow[d];
        delta[r * T + t] = acc;
        std::fill(dq + (b * T + t) * lddq + h * D, dq + (b * T + t) * lddq + (h + 1) * D, 0.0f);
      }
    }

    // Key blocks outer (FlashAttention-2 backward): dK, dV of a block finish in scratch, then are stored once;
    // dQ rows are summed in place over key blocks in increasing order.
    for (int64_t k0 = 0; k0 < T; k0 += kBlock) {
      const int64_t nk = std::min(kBlock, T - k0);
      const float* kp = k + (b * T + k0) * ldk + g * D;
      const float* vp = v + (b * T + k0) * ldv + g * D;
      std::fill(dk_acc, dk_acc + nk * D, 0.0f);
      std::fill(dv_acc, dv_acc + nk * D, 0.0f);
      for (int64_t r = 0; r < rep; ++r) {
        const int64_t h = g * rep + r;
        const float* lse_h = lse + (b * H + h) * T;
        for (int64_t q0 = k0; q0 < T; q0 += kBlock) {  // query blocks at or below the diagonal
          const int64_t mq = std::min(kBlock, T - q0);
          const float* qp = q + (b * T + q0) * ldq + h * D;
          const float* dop = dout + (b * T + q0) * lddo + h * D;
          float* dqp = dq + (b * T + q0) * lddq + h * D;
          // P = exp(scale * Q K^T - lse), masked entries exactly 0.
          sgemm_serial(false, true, mq, nk, D, scale, qp, ldq, kp, ldk, 0.0f, p, kBlock);
          for (int64_t i = 0; i < mq; ++i) {
            exp_shift_row(p + i * kBlock, std::min(nk, q0 + i - k0 + 1), nk, lse_h[q0 + i]);
          }
          sgemm_serial(true, false, nk, D, mq, 1.0f, p, kBlock, dop, lddo, 1.0f, dv_acc, D);  // dV += P^T dO
          sgemm_serial(false, true, mq, nk, D, 1.0f, dop, lddo, vp, ldv, 0.0f, ds, kBlock);  // dP = dO V^T
          // dS = P * (dP - delta), with the score scale folded in so the two products below need no alpha.
          for (int64_t i = 0; i < mq; ++i) {
            const float di = delta[r * T + q0 + i];
            const float* prow = p + i * kBlock;
            float* srow = ds + i * kBlock;
            for (int64_t j = 0; j < nk; ++j) srow[j] = prow[j] * (srow[j] - di) * scale;
          }
          sgemm_serial(false, false, mq, D, nk, 1.0f, ds, kBlock, kp, ldk, 1.0f, dqp, lddq);   // dQ += dS K
          sgemm_serial(true, false, nk, D, mq, 1.0f, ds, kBlock, qp, ldq, 1.0f, dk_acc, D);   // dK += dS^T Q
        }
      }
      for (int64_t j = 0; j < nk; ++j) {
        std::memcpy(dk + (b * T + k0 + j) * lddk + g * D, dk_acc + j * D, sizeof(float) * D);
        std::memcpy(dv + (b * T + k0 + j) * lddv + g * D, dv_acc + j * D, sizeof(float) * D);
      }
    }
  });
}

int64_t attention_scratch_floats_peak() { return g_scratch_peak.load(std::memory_order_relaxed); }
void attention_reset_scratch_peak() { g_scratch_peak.store(0, std::memory_order_relaxed); }

}  // namespace memtrain::cpu
