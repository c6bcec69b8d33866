// Elementwise kernels (memory bound) and the reductions, in fixed chunks; the inner loops are those of
// kernel_table() (AVX2 or AVX-512, simd_kernels.h).
#include "core/cpu/elementwise.h"

#include <algorithm>
#include <vector>

#include "core/cpu/kernel_table.h"
#include "core/cpu/row_partials.h"
#include "core/status.h"

namespace memtrain::cpu {
namespace {
constexpr int64_t kGrain = 16384;  // elements per task: 64 KiB streams, well above a thread wake-up
constexpr int64_t kSumChunk = 65536;  // sum_squares chunk; a function of nothing but this constant
}  // namespace

void add(const float* a, const float* b, float* y, int64_t n, ThreadPool& pool) {
  const auto fn = kernel_table().add;
  pool.parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) { fn(a + i0, b + i0, y + i0, i1 - i0); });
}

void add_inplace(float* y, const float* x, int64_t n, ThreadPool& pool) {
  const auto fn = kernel_table().add_inplace;
  pool.parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) { fn(y + i0, x + i0, i1 - i0); });
}

void scale_inplace(float* x, float s, int64_t n, ThreadPool& pool) {
  const auto fn = kernel_table().scale_inplace;
  pool.parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) { fn(x + i0, s, i1 - i0); });
}

void add_bias(float* y, const float* bias, int64_t rows, int64_t C, ThreadPool& pool) {
  const auto fn = kernel_table().add_bias;
  pool.parallel_for(rows, row_chunks(rows, C).grain, [&](int64_t r0, int64_t r1) { fn(y + r0 * C, bias, r1 - r0, C); });
}

void bias_backward(const float* dy, int64_t rows, int64_t C, float* dbias, ThreadPool& pool) {
  if (C <= 0) return;
  const RowChunks chunks = row_chunks(rows, C);
  float* partials = partials_scratch(chunks.count * C);
  const auto fn = kernel_table().column_sums;
  pool.parallel_for(rows, chunks.grain, [&](int64_t r0, int64_t r1) {
    fn(dy + r0 * C, r1 - r0, C, partials + (r0 / chunks.grain) * C);
  });
  add_partials(partials, chunks.count, C, dbias, pool);
}

double sum_squares(const float* x, int64_t n, ThreadPool& pool) {
  if (n <= 0) return 0.0;
  const int64_t chunks = (n + kSumChunk - 1) / kSumChunk;
  std::vector<double> partial(chunks);
  const auto fn = kernel_table().sum_squares;
  pool.parallel_for(n, kSumChunk, [&](int64_t i0, int64_t i1) { partial[i0 / kSumChunk] = fn(x + i0, i1 - i0); });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

void block_sum_squares(const float* x, int64_t n, int64_t block, double* out, ThreadPool& pool) {
  MEMTRAIN_CHECK(block > 0 && n % block == 0);
  const auto fn = kernel_table().sum_squares;
  pool.parallel_for(n / block, std::max<int64_t>(1, kGrain / block), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) out[b] = fn(x + b * block, block);
  });
}

}  // namespace memtrain::cpu
