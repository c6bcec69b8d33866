// SwiGLU kernels, vectorised with AVX2 (one exp and one division per element).
#include "core/cpu/swiglu.h"

#include "core/cpu/vec_math.h"

namespace memtrain::cpu {
namespace {
constexpr int64_t W = vec::kWidth;
constexpr int64_t kGrain = 16384;  // elements per task: well above the cost of waking a thread
}  // namespace

void swiglu_forward(const float* gate, const float* up, float* y, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i += W) {
      const int64_t k = i1 - i;
      const __m256 g = vec::load(gate + i, k);
      vec::store(y + i, k, _mm256_mul_ps(_mm256_mul_ps(g, vec::sigmoid(g)), vec::load(up + i, k)));
    }
  });
}

// silu'(g) = s + g s (1 - s) with s = sigmoid(g).
void swiglu_backward(const float* dy, const float* gate, const float* up, float* dgate, float* dup, int64_t n,
                     ThreadPool& pool) {
  pool.parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i += W) {
      const int64_t k = i1 - i;
      const __m256 g = vec::load(gate + i, k), u = vec::load(up + i, k), d = vec::load(dy + i, k);
      __m256 s, one_minus_s;
      vec::sigmoid_and_complement(g, &s, &one_minus_s);
      const __m256 silu = _mm256_mul_ps(g, s);
      const __m256 dsilu = _mm256_fmadd_ps(silu, one_minus_s, s);
      vec::store(dgate + i, k, _mm256_mul_ps(_mm256_mul_ps(d, u), dsilu));
      vec::store(dup + i, k, _mm256_mul_ps(d, silu));
    }
  });
}

}  // namespace memtrain::cpu
