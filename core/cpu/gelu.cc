// GELU kernels, vectorised with AVX2. tanh is rewritten through a sigmoid, 0.5 * (1 + tanh(u)) = sigmoid(2u), which
// needs one exp and one division and has no cancellation for small |u| or in the tails.
#include "core/cpu/gelu.h"

#include "core/cpu/vec_math.h"

namespace memtrain::cpu {
namespace {

constexpr int64_t W = vec::kWidth;
constexpr int64_t kGrain = 16384;  // elements per task: ~10 us of work, well above a thread wake-up (~1-2 us)
constexpr float kTwoSqrt2OverPi = 1.5957691216057308f;  // 2 * sqrt(2 / pi): sigmoid(2u) absorbs the factor 2
constexpr float kCubic = 0.044715f;

// 2u = 2 sqrt(2/pi) (x + 0.044715 x^3), so that 0.5 * (1 + tanh(u)) = sigmoid(2u).
inline __m256 two_u(__m256 x) {
  const __m256 x2 = _mm256_mul_ps(x, x);
  const __m256 inner = _mm256_mul_ps(x, _mm256_fmadd_ps(_mm256_set1_ps(kCubic), x2, _mm256_set1_ps(1.0f)));
  return _mm256_mul_ps(_mm256_set1_ps(kTwoSqrt2OverPi), inner);
}

inline __m256 gelu(__m256 x) { return _mm256_mul_ps(x, vec::sigmoid(two_u(x))); }

// d/dx [x s] = s + x * ds/dx, ds/dx = 2 s (1 - s) * sqrt(2/pi) (1 + 3 * 0.044715 x^2) since 1 - tanh^2 = 4 s (1 - s).
inline __m256 gelu_grad(__m256 x) {
  __m256 s, one_minus_s;
  vec::sigmoid_and_complement(two_u(x), &s, &one_minus_s);
  const __m256 x2 = _mm256_mul_ps(x, x);
  const __m256 du = _mm256_mul_ps(_mm256_set1_ps(kTwoSqrt2OverPi),
                                  _mm256_fmadd_ps(_mm256_set1_ps(3.0f * kCubic), x2, _mm256_set1_ps(1.0f)));
  const __m256 ds = _mm256_mul_ps(_mm256_mul_ps(s, one_minus_s), du);
  return _mm256_fmadd_ps(x, ds, s);
}

}  // namespace

void gelu_forward(const float* x, float* y, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i += W) vec::store(y + i, i1 - i, gelu(vec::load(x + i, i1 - i)));
  });
}

void gelu_backward(const float* dy, const float* x, float* dx, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i += W) {
      const int64_t k = i1 - i;
      vec::store(dx + i, k, _mm256_mul_ps(vec::load(dy + i, k), gelu_grad(vec::load(x + i, k))));
    }
  });
}

}  // namespace memtrain::cpu
