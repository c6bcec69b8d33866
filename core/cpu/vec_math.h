// AVX2 building blocks shared by the fp32 kernels: a vector exp accurate to ~2 ulp, horizontal sums, and masked
// loads/stores for vector tails. Header-only so the compiler can inline them into each kernel's hot loop.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace memtrain::cpu::vec {

inline constexpr int kWidth = 8;  // floats per __m256

// Lane mask with the first `k` lanes (0 <= k <= 8) set, for maskload/maskstore of a vector tail.
inline __m256i tail_mask(int64_t k) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(k)), lanes);
}
// Masked-off lanes read as 0, so they add nothing to sums.
inline __m256 load_tail(const float* p, int64_t k) { return _mm256_maskload_ps(p, tail_mask(k)); }
inline void store_tail(float* p, int64_t k, __m256 v) { _mm256_maskstore_ps(p, tail_mask(k), v); }
// The k >= 8 elements at p (a full vector) or the k < 8 that remain at a row's end.
inline __m256 load(const float* p, int64_t k) { return k >= kWidth ? _mm256_loadu_ps(p) : load_tail(p, k); }
inline void store(float* p, int64_t k, __m256 v) {
  if (k >= kWidth) _mm256_storeu_ps(p, v); else store_tail(p, k, v);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline double hsum(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

// e^x, Cephes' expf scheme: x = n*ln2 + r with |r| <= ln2/2, e^r by a degree-7 polynomial, times 2^n built in the
// exponent bits. Max relative error ~1.5e-7 on the whole range (checked against double in vec_math_test).
// x > 88.376 gives +inf, x < -87.336 gives 0 (both where fp32 e^x over/underflows anyway), NaN stays NaN.
inline __m256 exp(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365478515625f);
  const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
  // n = round(x / ln2); ln2 split in two so that n*ln2 is exact to ~2^-32 relative (Cody-Waite).
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
  p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
  // n is in [-126, 127] after the clamp, so 2^n is a normal float.
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
  y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// 1 / (1 + e^-x), with an exact division: accurate to a few ulp in both tails (no 1 - tiny cancellation).
inline __m256 sigmoid(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

// s = sigmoid(x) and 1 - s, the latter as e^-x * s rather than 1 - s, which keeps its relative precision where s
// rounds to ~1 (derivatives s (1 - s) need it). Where e^-x is inf, s = 0 and inf * 0 = NaN: min(NaN, 1) picks 1.
inline void sigmoid_and_complement(__m256 x, __m256* s, __m256* one_minus_s) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
  *s = _mm256_div_ps(one, _mm256_add_ps(one, e));
  *one_minus_s = _mm256_min_ps(_mm256_mul_ps(e, *s), one);
}

}  // namespace memtrain::cpu::vec
