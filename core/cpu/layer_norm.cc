// LayerNorm kernels: rows split across the pool, each block of rows run by the inner loop of kernel_table() (AVX2
// or AVX-512, simd_kernels.h), vectorised over C.
#include "core/cpu/layer_norm.h"

#include <cstring>

#include "core/cpu/kernel_table.h"
#include "core/cpu/row_partials.h"
#include "core/status.h"

namespace memtrain::cpu {

void layer_norm_forward(const float* x, const float* weight, const float* bias, float eps, int64_t rows, int64_t C,
                        float* y, float* mean, float* rstd, ThreadPool& pool) {
  MEMTRAIN_CHECK(C > 0 && rows >= 0);
  const int64_t grain = row_chunks(rows, C).grain;  // rows are independent: any split would do
  const auto fn = kernel_table().layer_norm_forward;
  pool.parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    fn(x + r0 * C, weight, bias, eps, r1 - r0, C, y + r0 * C, mean + r0, rstd + r0);
  });
}

void layer_norm_backward(const float* dy, const float* x, const float* mean, const float* rstd, const float* weight,
                         int64_t rows, int64_t C, float* dx, float* dweight, float* dbias, ThreadPool& pool) {
  MEMTRAIN_CHECK(C > 0 && rows >= 0);
  const RowChunks chunks = row_chunks(rows, C);
  float* pw = partials_scratch(2 * chunks.count * C);
  float* pb = dbias ? pw + chunks.count * C : nullptr;
  const auto fn = kernel_table().layer_norm_backward;
  pool.parallel_for(rows, chunks.grain, [&](int64_t r0, int64_t r1) {
    const int64_t k = r0 / chunks.grain;
    float* w_part = pw + k * C;
    float* b_part = pb ? pb + k * C : nullptr;
    std::memset(w_part, 0, C * sizeof(float));
    if (b_part) std::memset(b_part, 0, C * sizeof(float));
    fn(dy + r0 * C, x + r0 * C, mean + r0, rstd + r0, weight, r1 - r0, C, dx + r0 * C, w_part, b_part);
  });
  add_partials(pw, chunks.count, C, dweight, pool);
  if (dbias) add_partials(pb, chunks.count, C, dbias, pool);
}

}  // namespace memtrain::cpu
