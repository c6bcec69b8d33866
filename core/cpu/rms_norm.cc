// RMSNorm kernels: rows split across the pool, each block of rows run by the inner loop of kernel_table() (AVX2
// or AVX-512, simd_kernels.h), vectorised over C.
#include "core/cpu/rms_norm.h"

#include <cstring>

#include "core/cpu/kernel_table.h"
#include "core/cpu/row_partials.h"
#include "core/status.h"

namespace memtrain::cpu {

void rms_norm_forward(const float* x, const float* weight, float eps, int64_t rows, int64_t C, float* y, float* rstd,
                      ThreadPool& pool) {
  MEMTRAIN_CHECK(C > 0 && rows >= 0);
  const auto fn = kernel_table().rms_norm_forward;
  pool.parallel_for(rows, row_chunks(rows, C).grain, [&](int64_t r0, int64_t r1) {
    fn(x + r0 * C, weight, eps, r1 - r0, C, y + r0 * C, rstd + r0);
  });
}

void rms_norm_backward(const float* dy, const float* x, const float* rstd, const float* weight, int64_t rows,
                       int64_t C, float* dx, float* dweight, ThreadPool& pool) {
  MEMTRAIN_CHECK(C > 0 && rows >= 0);
  const RowChunks chunks = row_chunks(rows, C);
  float* pw = partials_scratch(chunks.count * C);
  const auto fn = kernel_table().rms_norm_backward;
  pool.parallel_for(rows, chunks.grain, [&](int64_t r0, int64_t r1) {
    float* w_part = pw + (r0 / chunks.grain) * C;
    std::memset(w_part, 0, C * sizeof(float));
    fn(dy + r0 * C, x + r0 * C, rstd + r0, weight, r1 - r0, C, dx + r0 * C, w_part);
  });
  add_partials(pw, chunks.count, C, dweight, pool);
}

}  // namespace memtrain::cpu
