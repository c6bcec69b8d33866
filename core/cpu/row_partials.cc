// Chunking and in-order combination of per-chunk column partial sums; see row_partials.h.
#include "core/cpu/row_partials.h"

#include <algorithm>

namespace memtrain::cpu {

RowChunks row_chunks(int64_t rows, int64_t C) {
  constexpr int64_t kMinRows = 8, kMinElements = 16384, kMaxChunks = 64;
  int64_t grain = std::max<int64_t>(kMinRows, kMinElements / std::max<int64_t>(C, 1));
  grain = std::max(grain, (rows + kMaxChunks - 1) / kMaxChunks);
  const int64_t count = rows <= 0 ? 0 : (rows + grain - 1) / grain;
  return {grain, count};
}

void add_partials(const float* partials, int64_t chunks, int64_t C, float* out, ThreadPool& pool) {
  // Column blocks of 256 floats (1 KiB): enough work per task, and the k loop streams each partial row block.
  constexpr int64_t kCols = 256;
  pool.parallel_for(C, kCols, [&](int64_t c0, int64_t c1) {
    float acc[kCols];
    const int64_t w = c1 - c0;
    for (int64_t c = 0; c < w; ++c) acc[c] = 0.0f;
    for (int64_t k = 0; k < chunks; ++k) {
      const float* p = partials + k * C + c0;
      for (int64_t c = 0; c < w; ++c) acc[c] += p[c];
    }
    for (int64_t c = 0; c < w; ++c) out[c0 + c] += acc[c];
  });
}

float* partials_scratch(int64_t n) {
  thread_local std::vector<float> buffer;
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(n);
  return buffer.data();
}

}  // namespace memtrain::cpu
