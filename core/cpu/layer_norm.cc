// LayerNorm kernels: one row per inner call, vectorised over C with AVX2; rows split across the pool.
#include "core/cpu/layer_norm.h"

#include <cmath>
#include <cstring>

#include "core/cpu/row_partials.h"
#include "core/cpu/vec_math.h"
#include "core/status.h"

namespace memtrain::cpu {
namespace {

constexpr int64_t W = vec::kWidth;
using vec::load;
using vec::store;

// Sum of a row with two vector accumulators: a fixed order for a given C, and shorter dependency chains.
float row_sum(const float* x, int64_t C) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 2 * W <= C; c += 2 * W) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + c));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + c + W));
  }
  for (; c < C; c += W) a0 = _mm256_add_ps(a0, vec::load_tail(x + c, C - c));
  return vec::hsum(_mm256_add_ps(a0, a1));
}

// Sum of (x - m)^2: the two-pass variance, which keeps its precision when |mean| >> std.
float row_centered_sq(const float* x, float m, int64_t C) {
  const __m256 mv = _mm256_set1_ps(m);
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 2 * W <= C; c += 2 * W) {
    const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + c), mv);
    const __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + c + W), mv);
    a0 = _mm256_fmadd_ps(d0, d0, a0);
    a1 = _mm256_fmadd_ps(d1, d1, a1);
  }
  for (; c < C; c += W) {
    const int64_t k = C - c;
    // Masked-off lanes load 0; subtracting the mean there would add m^2, so mask the difference too.
    const __m256 d = _mm256_and_ps(_mm256_sub_ps(vec::load_tail(x + c, k), mv), _mm256_castsi256_ps(vec::tail_mask(k)));
    a0 = _mm256_fmadd_ps(d, d, a0);
  }
  return vec::hsum(_mm256_add_ps(a0, a1));
}

void forward_row(const float* x, const float* weight, const float* bias, float eps, int64_t C, float* y, float* mean,
                 float* rstd) {
  const float m = row_sum(x, C) / static_cast<float>(C);
  const float var = row_centered_sq(x, m, C) / static_cast<float>(C);
  const float s = 1.0f / std::sqrt(var + eps);
  *mean = m;
  *rstd = s;
  const __m256 mv = _mm256_set1_ps(m), sv = _mm256_set1_ps(s);
  for (int64_t c = 0; c < C; c += W) {
    const int64_t k = C - c;
    const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(load(x + c, k), mv), sv);
    store(y + c, k, bias ? _mm256_fmadd_ps(xhat, load(weight + c, k), load(bias + c, k))
                         : _mm256_mul_ps(xhat, load(weight + c, k)));
  }
}

// One row of backward. With xhat = (x - mean) * rstd and g = dy * weight:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  dweight += dy * xhat,  dbias += dy.
void backward_row(const float* dy, const float* x, float m, float s, const float* weight, int64_t C, float* dx,
                  float* pw, float* pb) {
  const __m256 mv = _mm256_set1_ps(m), sv = _mm256_set1_ps(s);
  __m256 sg = _mm256_setzero_ps(), sgx = _mm256_setzero_ps();
  for (int64_t c = 0; c < C; c += W) {
    const int64_t k = C - c;
    const __m256 g = _mm256_mul_ps(load(dy + c, k), load(weight + c, k));  // 0 in masked-off lanes
    const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(load(x + c, k), mv), sv);
    sg = _mm256_add_ps(sg, g);
    sgx = _mm256_fmadd_ps(g, xhat, sgx);
  }
  const float inv_c = 1.0f / static_cast<float>(C);
  const __m256 mean_g = _mm256_set1_ps(vec::hsum(sg) * inv_c), mean_gx = _mm256_set1_ps(vec::hsum(sgx) * inv_c);
  for (int64_t c = 0; c < C; c += W) {
    const int64_t k = C - c;
    const __m256 dyv = load(dy + c, k);
    const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(load(x + c, k), mv), sv);
    const __m256 g = _mm256_mul_ps(dyv, load(weight + c, k));
    store(dx + c, k, _mm256_mul_ps(sv, _mm256_sub_ps(_mm256_sub_ps(g, mean_g), _mm256_mul_ps(xhat, mean_gx))));
    store(pw + c, k, _mm256_fmadd_ps(dyv, xhat, load(pw + c, k)));  // dx may alias dy: dy + c was read above
    if (pb) store(pb + c, k, _mm256_add_ps(dyv, load(pb + c, k)));
  }
}

}  // namespace

void layer_norm_forward(const float* x, const float* weight, const float* bias, float eps, int64_t rows, int64_t C,
                        float* y, float* mean, float* rstd, ThreadPool& pool) {
  MEMTRAIN_CHECK(C > 0 && rows >= 0);
  const int64_t grain = row_chunks(rows, C).grain;  // rows are independent: any split would do
  pool.parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      forward_row(x + r * C, weight, bias, eps, C, y + r * C, mean + r, rstd + r);
  });
}

void layer_norm_backward(const float* dy, const float* x, const float* mean, const float* rstd, const float* weight,
                         int64_t rows, int64_t C, float* dx, float* dweight, float* dbias, ThreadPool& pool) {
  MEMTRAIN_CHECK(C > 0 && rows >= 0);
  const RowChunks chunks = row_chunks(rows, C);
  float* pw = partials_scratch(2 * chunks.count * C);
  float* pb = dbias ? pw + chunks.count * C : nullptr;
  pool.parallel_for(rows, chunks.grain, [&](int64_t r0, int64_t r1) {
    const int64_t k = r0 / chunks.grain;
    float* w_part = pw + k * C;
    float* b_part = pb ? pb + k * C : nullptr;
    std::memset(w_part, 0, C * sizeof(float));
    if (b_part) std::memset(b_part, 0, C * sizeof(float));
    for (int64_t r = r0; r < r1; ++r)
      backward_row(dy + r * C, x + r * C, mean[r], rstd[r], weight, C, dx + r * C, w_part, b_part);
  });
  add_partials(pw, chunks.count, C, dweight, pool);
  if (dbias) add_partials(pb, chunks.count, C, dbias, pool);
}

}  // namespace memtrain::cpu
