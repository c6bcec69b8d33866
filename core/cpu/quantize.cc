#include "core/cpu/quantize.h"

#include <algorithm>
#include <cmath>

#include "core/status.h"

namespace memtrain::cpu {
namespace {
constexpr int64_t kBlocksPerTask = 64;
}

void quantize_int8_blocks(const float* x, int64_t n, int64_t block, int8_t* q, float* scales, ThreadPool& pool) {
  MEMTRAIN_CHECK(block > 0 && n % block == 0);
  pool.parallel_for(n / block, kBlocksPerTask, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const float* xb = x + b * block;
      float amax = 0;
      for (int64_t i = 0; i < block; ++i) amax = std::max(amax, std::fabs(xb[i]));
      const float scale = amax / 127.0f;
      scales[b] = scale;
      const float inv = scale > 0 ? 1.0f / scale : 0.0f;
      for (int64_t i = 0; i < block; ++i) {
        const float v = std::nearbyint(xb[i] * inv);
        q[b * block + i] = static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f));
      }
    }
  });
}

void dequantize_int8_blocks(const int8_t* q, const float* scales, int64_t n, int64_t block, float* x,
                            ThreadPool& pool) {
  MEMTRAIN_CHECK(block > 0 && n % block == 0);
  pool.parallel_for(n / block, kBlocksPerTask, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const float s = scales[b];
      for (int64_t i = 0; i < block; ++i) x[b * block + i] = static_cast<float>(q[b * block + i]) * s;
    }
  });
}

}  // namespace memtrain::cpu
