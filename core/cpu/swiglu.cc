// SwiGLU kernels (one exp and one division per element): the pool splits the elements, and each chunk runs the
// inner loop of kernel_table() (AVX2 or AVX-512, simd_kernels.h).
#include "core/cpu/swiglu.h"

#include "core/cpu/kernel_table.h"

namespace memtrain::cpu {
namespace {
constexpr int64_t kGrain = 16384;  // elements per task: well above the cost of waking a thread
}  // namespace

void swiglu_forward(const float* gate, const float* up, float* y, int64_t n, ThreadPool& pool) {
  const auto fn = kernel_table().swiglu_forward;
  pool.parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) { fn(gate + i0, up + i0, y + i0, i1 - i0); });
}

void swiglu_backward(const float* dy, const float* gate, const float* up, float* dgate, float* dup, int64_t n,
                     ThreadPool& pool) {
  const auto fn = kernel_table().swiglu_backward;
  pool.parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    fn(dy + i0, gate + i0, up + i0, dgate + i0, dup + i0, i1 - i0);
  });
}

}  // namespace memtrain::cpu
