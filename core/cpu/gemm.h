// Row-major fp32 GEMM on the thread pool: each task calls single-threaded OpenBLAS on a tile of C. Tiles depend
// only on (M, N), and a tile's K loop is OpenBLAS's own, so results do not change with the thread count.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace memtrain::cpu {

// C (M, N) = alpha * op(A) * op(B) + beta * C. op(A) is (M, K): A is (M, K) with row stride lda, or (K, M) when
// trans_a. op(B) is (K, N): B is (K, N) with row stride ldb, or (N, K) when trans_b.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, ThreadPool& pool);

// Single-threaded, for callers that are already inside a pool task (attention blocks).
void sgemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace memtrain::cpu

namespace memtrain::cpu {
// The sgemm rate this machine reaches on `pool` (square products of 1024, best of 20), in GFLOP/s: the peak
// that MFU figures are quoted against.
double measure_sgemm_gflops(ThreadPool& pool);
// The kernels OpenBLAS chose for this CPU at load time ("Haswell", "SkylakeX", "Cooperlake", ...); its
// DYNAMIC_ARCH build picks AVX-512 kernels where the CPU has them unless OPENBLAS_CORETYPE says otherwise.
const char* blas_core_name();
}  // namespace memtrain::cpu
