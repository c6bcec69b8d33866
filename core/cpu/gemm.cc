#include "core/cpu/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <vector>

namespace memtrain::cpu {
namespace {
void init_blas_once() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });  // parallelism comes from our pool
}
}  // namespace

void sgemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  init_blas_once();
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A, static_cast<int>(lda), B,
              static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, ThreadPool& pool) {
  if (M == 0 || N == 0) return;
  // Split the longer side of C into at most 8 tiles of at least 64 (a multiple of 16): large enough that
  // OpenBLAS's packing of the other operand stays a small part of each tile's work.
  const bool split_m = M >= N;
  const int64_t dim = split_m ? M : N;
  const int64_t tile = std::max<int64_t>(64, (dim / 8 + 15) / 16 * 16);
  pool.parallel_for(dim, tile, [&](int64_t lo, int64_t hi) {
    if (split_m) {
      const float* a = trans_a ? A + lo : A + lo * lda;
      sgemm_serial(trans_a, trans_b, hi - lo, N, K, alpha, a, lda, B, ldb, beta, C + lo * ldc, ldc);
    } else {
      const float* b = trans_b ? B + lo * ldb : B + lo;
      sgemm_serial(trans_a, trans_b, M, hi - lo, K, alpha, A, lda, b, ldb, beta, C + lo, ldc);
    }
  });
}

}  // namespace memtrain::cpu

namespace memtrain::cpu {
const char* blas_core_name() { return openblas_get_corename(); }

double measure_sgemm_gflops(ThreadPool& pool) {
  constexpr int64_t n = 1024;  // large enough for OpenBLAS's steady state, ~2 GFLOP per product
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  double best = 1e30;
  // Best of 20 (~0.2 s): the virtual CPUs here are sometimes served by one physical core for a while, halving
  // any rate measured during that time.
  for (int rep = 0; rep < 20; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    sgemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n, pool);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * n * n * n / best * 1e-9;
}
}  // namespace memtrain::cpu
