// Elementwise kernels are plain loops that -O3 vectorises (they are memory bound); the reductions use fixed chunks.
#include "core/cpu/elementwise.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cpu/row_partials.h"
#include "core/cpu/vec_math.h"

namespace memtrain::cpu {
namespace {
constexpr int64_t kGrain = 16384;  // elements per task: 64 KiB streams, well above a thread wake-up
constexpr int64_t kSumChunk = 65536;  // sum_squares chunk; a function of nothing but this constant
}  // namespace

void add(const float* a, const float* b, float* y, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = a[i] + b[i];
  });
}

void add_inplace(float* y, const float* x, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] += x[i];
  });
}

void scale_inplace(float* x, float s, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) x[i] *= s;
  });
}

void add_bias(float* y, const float* bias, int64_t rows, int64_t C, ThreadPool& pool) {
  pool.parallel_for(rows, row_chunks(rows, C).grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* yr = y + r * C;
      for (int64_t c = 0; c < C; ++c) yr[c] += bias[c];
    }
  });
}

void bias_backward(const float* dy, int64_t rows, int64_t C, float* dbias, ThreadPool& pool) {
  if (C <= 0) return;
  const RowChunks chunks = row_chunks(rows, C);
  float* partials = partials_scratch(chunks.count * C);
  pool.parallel_for(rows, chunks.grain, [&](int64_t r0, int64_t r1) {
    float* p = partials + (r0 / chunks.grain) * C;
    std::memcpy(p, dy + r0 * C, C * sizeof(float));
    for (int64_t r = r0 + 1; r < r1; ++r) {
      const float* d = dy + r * C;
      for (int64_t c = 0; c < C; ++c) p[c] += d[c];
    }
  });
  add_partials(partials, chunks.count, C, dbias, pool);
}

double sum_squares(const float* x, int64_t n, ThreadPool& pool) {
  if (n <= 0) return 0.0;
  const int64_t chunks = (n + kSumChunk - 1) / kSumChunk;
  std::vector<double> partial(chunks);
  pool.parallel_for(n, kSumChunk, [&](int64_t i0, int64_t i1) {
    // Four double accumulators of 4 lanes each; squares of floats are exact in double, only the adds round.
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), a2 = _mm256_setzero_pd(), a3 = _mm256_setzero_pd();
    int64_t i = i0;
    for (; i + 16 <= i1; i += 16) {
      const __m256 u = _mm256_loadu_ps(x + i), w = _mm256_loadu_ps(x + i + 8);
      const __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(u)), d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(u, 1));
      const __m256d d2 = _mm256_cvtps_pd(_mm256_castps256_ps128(w)), d3 = _mm256_cvtps_pd(_mm256_extractf128_ps(w, 1));
      a0 = _mm256_fmadd_pd(d0, d0, a0);
      a1 = _mm256_fmadd_pd(d1, d1, a1);
      a2 = _mm256_fmadd_pd(d2, d2, a2);
      a3 = _mm256_fmadd_pd(d3, d3, a3);
    }
    double s = vec::hsum(_mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
    for (; i < i1; ++i) s += static_cast<double>(x[i]) * x[i];
    partial[i0 / kSumChunk] = s;
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace memtrain::cpu
