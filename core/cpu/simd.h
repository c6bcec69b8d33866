// Width-generic vector building blocks for the fp32 kernels. Each instruction set is a traits struct with the same
// static functions (Avx2: 8 floats in a __m256; Avx512: 16 in a __m512), and the math on top of them (exp,
// sigmoid) is written once as templates over the traits, so a kernel's loop is written once (simd_kernels.h) and
// instantiated per instruction set. Avx512 is defined only where the compiler targets AVX-512, which in this build
// is core/cpu/kernels_avx512.cc alone; it is reached at run time only through simd_level().
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace memtrain::cpu::simd {

struct Avx2 {
  using F = __m256;   // 8 floats
  using M = __m256;   // lane mask: all-ones or all-zeros per lane
  using D = __m256d;  // 4 doubles: half an F, widened
  static constexpr int64_t kWidth = 8;

  // Lane mask with the first min(k, 8) lanes set (k >= 0).
  static __m256i tail_mask(int64_t k) {
    const int kk = k >= kWidth ? kWidth : static_cast<int>(k);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(kk), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  // The k >= 8 elements at p (a full vector) or the k < 8 that remain at a row's end; masked-off lanes read as 0
  // (so they add nothing to sums) and are not written.
  static F load(const float* p, int64_t k) {
    return k >= kWidth ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, tail_mask(k));
  }
  static void store(float* p, int64_t k, F v) {
    if (k >= kWidth) _mm256_storeu_ps(p, v); else _mm256_maskstore_ps(p, tail_mask(k), v);
  }
  static F loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, F v) { _mm256_storeu_ps(p, v); }
  // v with the lanes from k on zeroed (all of v for k >= 8).
  static F keep(F v, int64_t k) { return _mm256_and_ps(v, _mm256_castsi256_ps(tail_mask(k))); }

  static F zero() { return _mm256_setzero_ps(); }
  static F set1(float x) { return _mm256_set1_ps(x); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }   // a * b + c, one rounding
  static F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); } // c - a * b, one rounding
  static F max(F a, F b) { return _mm256_max_ps(a, b); }  // b where either is NaN
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F sqrt(F a) { return _mm256_sqrt_ps(a); }
  static F round_nearest(F a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // 2^n for integral n in [-126, 127], built in the exponent bits.
  static F pow2i(F n) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }
  static M gt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static M lt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static M is_nan(F a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
  static F select(M m, F if_set, F if_clear) { return _mm256_blendv_ps(if_clear, if_set, m); }

  static float hsum(F v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float hmax(F v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  static D zero_d() { return _mm256_setzero_pd(); }
  static D widen_lo(F v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
  static D widen_hi(F v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
  static D add_d(D a, D b) { return _mm256_add_pd(a, b); }
  static D fmadd_d(D a, D b, D c) { return _mm256_fmadd_pd(a, b, c); }
  static double hsum_d(D v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
};

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
// Only kernels_avx512.cc sees this. Everything it calls is an intrinsic (never emitted out of line), so no inline
// function compiled for AVX-512 can be picked by the linker in place of a baseline copy.
struct Avx512 {
  using F = __m512;     // 16 floats
  using M = __mmask16;  // one bit per lane
  using D = __m512d;    // 8 doubles
  static constexpr int64_t kWidth = 16;

  static M tail_mask(int64_t k) { return k >= kWidth ? M(0xFFFF) : M((1u << k) - 1u); }
  // Masked-off lanes read as 0 and are not written; a masked load does not fault on them.
  static F load(const float* p, int64_t k) {
    return k >= kWidth ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(tail_mask(k), p);
  }
  static void store(float* p, int64_t k, F v) {
    if (k >= kWidth) _mm512_storeu_ps(p, v); else _mm512_mask_storeu_ps(p, tail_mask(k), v);
  }
  static F loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, F v) { _mm512_storeu_ps(p, v); }
  static F keep(F v, int64_t k) { return _mm512_maskz_mov_ps(tail_mask(k), v); }

  static F zero() { return _mm512_setzero_ps(); }
  static F set1(float x) { return _mm512_set1_ps(x); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }  // b where either is NaN, as vmaxps ymm
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F sqrt(F a) { return _mm512_sqrt_ps(a); }
  static F round_nearest(F a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F pow2i(F n) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
  }
  static M gt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static M lt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M is_nan(F a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
  static F select(M m, F if_set, F if_clear) { return _mm512_mask_blend_ps(m, if_clear, if_set); }

  // Halves, then the same tree as Avx2::hsum: a fixed order, spelled out rather than left to _mm512_reduce_add_ps.
  static float hsum(F v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float hmax(F v) {
    const __m256 h = _mm256_max_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  static D zero_d() { return _mm512_setzero_pd(); }
  static D widen_lo(F v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
  static D widen_hi(F v) { return _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)); }
  static D add_d(D a, D b) { return _mm512_add_pd(a, b); }
  static D fmadd_d(D a, D b, D c) { return _mm512_fmadd_pd(a, b, c); }
  static double hsum_d(D v) {
    const __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
};
#endif

// e^x, Cephes' expf scheme: x = n*ln2 + r with |r| <= ln2/2, e^r by a degree-7 polynomial, times 2^n built in the
// exponent bits. Max relative error ~1.5e-7 on the whole range (checked against double in vec_math_test).
// x > 88.376 gives +inf, x < -87.336 gives 0 (both where fp32 e^x over/underflows anyway), NaN stays NaN.
// Every step is an exactly rounded lane-wise op, so the result is the same bits at every width.
template <class V>
typename V::F exp(typename V::F x) {
  const typename V::F hi = V::set1(88.3762626647949f), lo = V::set1(-87.3365478515625f);
  const typename V::F xc = V::min(V::max(x, lo), hi);
  // n = round(x / ln2); ln2 split in two so that n*ln2 is exact to ~2^-32 relative (Cody-Waite).
  const typename V::F n = V::round_nearest(V::mul(xc, V::set1(1.44269504088896341f)));
  typename V::F r = V::fnmadd(n, V::set1(0.693359375f), xc);
  r = V::fnmadd(n, V::set1(-2.12194440e-4f), r);
  typename V::F p = V::set1(1.9875691500e-4f);
  p = V::fmadd(p, r, V::set1(1.3981999507e-3f));
  p = V::fmadd(p, r, V::set1(8.3334519073e-3f));
  p = V::fmadd(p, r, V::set1(4.1665795894e-2f));
  p = V::fmadd(p, r, V::set1(1.6666665459e-1f));
  p = V::fmadd(p, r, V::set1(5.0000001201e-1f));
  p = V::fmadd(p, V::mul(r, r), r);
  p = V::add(p, V::set1(1.0f));
  // n is in [-126, 127] after the clamp, so 2^n is a normal float.
  typename V::F y = V::mul(p, V::pow2i(n));
  y = V::select(V::gt(x, hi), V::set1(__builtin_inff()), y);
  y = V::select(V::lt(x, lo), V::zero(), y);
  return V::select(V::is_nan(x), x, y);
}

// 1 / (1 + e^-x), with an exact division: accurate to a few ulp in both tails (no 1 - tiny cancellation).
template <class V>
typename V::F sigmoid(typename V::F x) {
  const typename V::F one = V::set1(1.0f);
  return V::div(one, V::add(one, exp<V>(V::sub(V::zero(), x))));
}

// s = sigmoid(x) and 1 - s, the latter as e^-x * s rather than 1 - s, which keeps its relative precision where s
// rounds to ~1 (derivatives s (1 - s) need it). Where e^-x is inf, s = 0 and inf * 0 = NaN: min(NaN, 1) picks 1.
template <class V>
void sigmoid_and_complement(typename V::F x, typename V::F* s, typename V::F* one_minus_s) {
  const typename V::F one = V::set1(1.0f);
  const typename V::F e = exp<V>(V::sub(V::zero(), x));
  *s = V::div(one, V::add(one, e));
  *one_minus_s = V::min(V::mul(e, *s), one);
}

}  // namespace memtrain::cpu::simd
