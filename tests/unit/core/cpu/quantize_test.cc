// Blockwise int8 quantization against a float64 reference: each value comes back within half a step of its
// block's scale, the scale is the block's max |x| / 127, the block maximum is exact up to rounding of the scale,
// and zero blocks stay zero.
#include "core/cpu/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/philox.h"

namespace memtrain::cpu {
namespace {

TEST(QuantizeInt8Blocks, RoundTripWithinHalfAStepOfTheBlockScale) {
  const int64_t block = 256, n = 64 * block;
  std::vector<float> x(n);
  philox_normal(philox_key(7, "q"), 0, n, 0.0f, 0.05f, x.data());
  for (int64_t i = 0; i < block; ++i) x[3 * block + i] = 0.0f;  // an all-zero block
  x[5 * block + 17] = 3.0f;                                     // an outlier dominates its block
  std::vector<int8_t> q(n);
  std::vector<float> scales(n / block), back(n);
  ThreadPool pool(2);
  quantize_int8_blocks(x.data(), n, block, q.data(), scales.data(), pool);
  dequantize_int8_blocks(q.data(), scales.data(), n, block, back.data(), pool);
  for (int64_t b = 0; b < n / block; ++b) {
    double amax = 0;
    for (int64_t i = 0; i < block; ++i) amax = std::max(amax, std::fabs(static_cast<double>(x[b * block + i])));
    EXPECT_NEAR(scales[b], amax / 127.0, 1e-7 * amax) << "block " << b;
    for (int64_t i = 0; i < block; ++i) {
      const int64_t k = b * block + i;
      EXPECT_LE(std::fabs(static_cast<double>(back[k]) - x[k]), 0.5 * scales[b] * (1 + 1e-6) + 1e-12) << k;
      EXPECT_GE(q[k], -127);
    }
  }
  for (int64_t i = 0; i < block; ++i) EXPECT_EQ(back[3 * block + i], 0.0f);
  EXPECT_NEAR(back[5 * block + 17], 3.0f, 1e-6);
}

}  // namespace
}  // namespace memtrain::cpu
