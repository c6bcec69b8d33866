// Embedding kernels. Backward splits the columns, not the rows, so that no two tasks ever add into the same
// dtable element and each element receives its rows in index order.
#include "core/cpu/embedding.h"

#include <algorithm>
#include <cstring>

#include "core/status.h"

namespace memtrain::cpu {

void embedding_forward(const int32_t* ids, const float* table, int64_t n, int64_t C, float* out, bool accumulate,
                       ThreadPool& pool) {
  const int64_t grain = std::max<int64_t>(8, 16384 / std::max<int64_t>(C, 1));  // rows per task
  pool.parallel_for(n, grain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float* dst = out + i * C;
      if (ids[i] < 0) {
        if (!accumulate) std::memset(dst, 0, C * sizeof(float));
        continue;
      }
      const float* src = table + static_cast<int64_t>(ids[i]) * C;
      if (accumulate) {
        for (int64_t c = 0; c < C; ++c) dst[c] += src[c];
      } else {
        std::memcpy(dst, src, C * sizeof(float));
      }
    }
  });
}

void embedding_backward(const int32_t* ids, const float* dout, int64_t n, int64_t C, int64_t V, float* dtable,
                        ThreadPool& pool) {
  MEMTRAIN_CHECK(C >= 0 && n >= 0 && V >= 0);
  // Column blocks of 64 floats (one 256-byte stripe per row), or fewer tasks when n is small so that each task
  // still has ~16K additions to do.
  const int64_t min_cols = 16384 / std::max<int64_t>(n, 1);
  const int64_t cols = std::min(std::max<int64_t>(C, 1), std::max<int64_t>(64, (min_cols + 63) / 64 * 64));
  pool.parallel_for(C, cols, [&](int64_t c0, int64_t c1) {
    const int64_t w = c1 - c0;
    for (int64_t i = 0; i < n; ++i) {
      if (ids[i] < 0) continue;
      float* dst = dtable + static_cast<int64_t>(ids[i]) * C + c0;
      const float* src = dout + i * C + c0;
      for (int64_t c = 0; c < w; ++c) dst[c] += src[c];
    }
  });
}

}  // namespace memtrain::cpu
