// Softmax cross-entropy: rows split across the pool; each row is max, then sum of exp (stored into dlogits when
// wanted), then scale, in the inner loop of kernel_table() (AVX2 or AVX-512, simd_kernels.h).
#include "core/cpu/cross_entropy.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cpu/kernel_table.h"
#include "core/status.h"

namespace memtrain::cpu {

double softmax_cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t V, float grad_scale,
                             float* dlogits, float* losses, ThreadPool& pool) {
  MEMTRAIN_CHECK(V > 0 && rows >= 0);
  thread_local std::vector<double> row_losses;
  row_losses.resize(rows);
  double* rl = row_losses.data();
  const int64_t grain = std::max<int64_t>(1, 16384 / V);  // rows per task
  const auto row_loss = kernel_table().cross_entropy_row;
  pool.parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* d = dlogits ? dlogits + r * V : nullptr;
      if (targets[r] < 0) {  // ignored row
        if (d) std::memset(d, 0, V * sizeof(float));
        rl[r] = 0.0;
        continue;
      }
      MEMTRAIN_CHECK(targets[r] < V);
      rl[r] = row_loss(logits + r * V, targets[r], V, grad_scale, d);
    }
  });
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    total += rl[r];
    if (losses) losses[r] = static_cast<float>(rl[r]);
  }
  return total;
}

}  // namespace memtrain::cpu
