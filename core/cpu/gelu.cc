// GELU kernels: the pool splits the elements, and each chunk runs the inner loop of kernel_table() (AVX2 or
// AVX-512, simd_kernels.h), where tanh is rewritten through a sigmoid.
#include "core/cpu/gelu.h"

#include "core/cpu/kernel_table.h"

namespace memtrain::cpu {
namespace {
constexpr int64_t kGrain = 16384;  // elements per task: ~10 us of work, well above a thread wake-up (~1-2 us)
}  // namespace

void gelu_forward(const float* x, float* y, int64_t n, ThreadPool& pool) {
  const auto fn = kernel_table().gelu_forward;
  pool.parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) { fn(x + i0, y + i0, i1 - i0); });
}

void gelu_backward(const float* dy, const float* x, float* dx, int64_t n, ThreadPool& pool) {
  const auto fn = kernel_table().gelu_backward;
  pool.parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) { fn(dy + i0, x + i0, dx + i0, i1 - i0); });
}

}  // namespace memtrain::cpu
