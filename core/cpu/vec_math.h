// AVX2 names for the fp32 kernels that are not width-generic (attention, rope): a vector exp accurate to ~2 ulp,
// horizontal sums, and masked loads/stores for vector tails. Thin wrappers over simd::Avx2 and the generic math of
// simd.h, so that both spellings give the same bits. Header-only so that the compiler inlines them into hot loops.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "core/cpu/simd.h"

namespace memtrain::cpu::vec {

inline constexpr int kWidth = 8;  // floats per __m256

// Lane mask with the first `k` lanes (0 <= k <= 8) set, for maskload/maskstore of a vector tail.
inline __m256i tail_mask(int64_t k) { return simd::Avx2::tail_mask(k); }
// Masked-off lanes read as 0, so they add nothing to sums.
inline __m256 load_tail(const float* p, int64_t k) { return _mm256_maskload_ps(p, tail_mask(k)); }
inline void store_tail(float* p, int64_t k, __m256 v) { _mm256_maskstore_ps(p, tail_mask(k), v); }
// The k >= 8 elements at p (a full vector) or the k < 8 that remain at a row's end.
inline __m256 load(const float* p, int64_t k) { return simd::Avx2::load(p, k); }
inline void store(float* p, int64_t k, __m256 v) { simd::Avx2::store(p, k, v); }

inline float hsum(__m256 v) { return simd::Avx2::hsum(v); }
inline float hmax(__m256 v) { return simd::Avx2::hmax(v); }
inline double hsum(__m256d v) { return simd::Avx2::hsum_d(v); }

// See simd::exp, simd::sigmoid and simd::sigmoid_and_complement.
inline __m256 exp(__m256 x) { return simd::exp<simd::Avx2>(x); }
inline __m256 sigmoid(__m256 x) { return simd::sigmoid<simd::Avx2>(x); }
inline void sigmoid_and_complement(__m256 x, __m256* s, __m256* one_minus_s) {
  simd::sigmoid_and_complement<simd::Avx2>(x, s, one_minus_s);
}

}  // namespace memtrain::cpu::vec
