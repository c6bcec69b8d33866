// RMSNorm kernels: one row per inner call, vectorised over C with AVX2; rows split across the pool.
#include "core/cpu/rms_norm.h"

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

float row_sum_sq(const float* x, int64_t C) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 2 * W <= C; c += 2 * W) {
    const __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + W);
    a0 = _mm256_fmadd_ps(x0, x0, a0);
    a1 = _mm256_fmadd_ps(x1, x1, a1);
  }
  for (; c < C; c += W) {
    const __m256 xv = load(x + c, C - c);
    a0 = _mm256_fmadd_ps(xv, xv, a0);
  }
  return vec::hsum(_mm256_add_ps(a0, a1));
}

void forward_row(const float* x, const float* weight, float eps, int64_t C, float* y, float* rstd) {
  const float s = 1.0f / std::sqrt(row_sum_sq(x, C) / static_cast<float>(C) + eps);
  *rstd = s;
  const __m256 sv = _mm256_set1_ps(s);
  for (int64_t c = 0; c < C; c += W) {
    const int64_t k = C - c;
    store(y + c, k, _mm256_mul_ps(_mm256_mul_ps(load(x + c, k), sv), load(weight + c, k)));
  }
}

// One row of backward. With g = dy * weight: dx = rstd * g - x * rstd^3 * mean(g * x),  dweight += dy * x * rstd.
void backward_row(const float* dy, const float* x, float s, const float* weight, int64_t C, float* dx, float* pw) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t c = 0; c < C; c += W) {
    const int64_t k = C - c;
    acc = _mm256_fmadd_ps(_mm256_mul_ps(load(dy + c, k), load(weight + c, k)), load(x + c, k), acc);
  }
  const float coef = s * s * s * vec::hsum(acc) / static_cast<float>(C);
  const __m256 sv = _mm256_set1_ps(s), cv = _mm256_set1_ps(coef);
  for (int64_t c = 0; c < C; c += W) {
    const int64_t k = C - c;
    const __m256 dyv = load(dy + c, k), xv = load(x + c, k);
    const __m256 g = _mm256_mul_ps(dyv, load(weight + c, k));
    store(dx + c, k, _mm256_sub_ps(_mm256_mul_ps(sv, g), _mm256_mul_ps(xv, cv)));  // dy + c already read
    store(pw + c, k, _mm256_fmadd_ps(dyv, _mm256_mul_ps(xv, sv), load(pw + c, k)));
  }
}

}  // namespace

void rms_norm_forward(const float* x, const float* weight, float eps, int64_t rows, int64_t C, float* y, float* rstd,
                      ThreadPool& pool) {
  MEMTRAIN_CHECK(C > 0 && rows >= 0);
  pool.parallel_for(rows, row_chunks(rows, C).grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) forward_row(x + r * C, weight, eps, C, y + r * C, rstd + r);
  });
}

void rms_norm_backward(const float* dy, const float* x, const float* rstd, const float* weight, int64_t rows,
                       int64_t C, float* dx, float* dweight, ThreadPool& pool) {
  MEMTRAIN_CHECK(C > 0 && rows >= 0);
  const RowChunks chunks = row_chunks(rows, C);
  float* pw = partials_scratch(chunks.count * C);
  pool.parallel_for(rows, chunks.grain, [&](int64_t r0, int64_t r1) {
    float* w_part = pw + (r0 / chunks.grain) * C;
    std::memset(w_part, 0, C * sizeof(float));
    for (int64_t r = r0; r < r1; ++r) backward_row(dy + r * C, x + r * C, rstd[r], weight, C, dx + r * C, w_part);
  });
  add_partials(pw, chunks.count, C, dweight, pool);
}

}  // namespace memtrain::cpu
