// bf16 and fp16 conversions against references computed another way: exhaustive decoding checked against
// ldexp arithmetic, and encoding checked as "the nearest representable value, ties to even" by search.
#include "core/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace memtrain {
namespace {

// Decodes a half by its definition: (-1)^s * 2^(e-15) * (1 + m/1024), subnormals 2^-14 * m/1024.
double half_by_definition(uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v;
  if (e == 0) v = std::ldexp(m / 1024.0, -14);
  else if (e == 31) v = m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else v = std::ldexp(1.0 + m / 1024.0, e - 15);
  return s ? -v : v;
}

TEST(Dtype, EveryHalfDecodesByDefinition) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const double want = half_by_definition(static_cast<uint16_t>(h));
    const float got = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(want)) ASSERT_TRUE(std::isnan(got)) << h;
    else ASSERT_EQ(static_cast<double>(got), want) << h;
  }
}

// The nearest finite half to x by scanning the sorted positive halves (ties: even mantissa), or inf past 65520.
uint16_t nearest_half(float x) {
  const double a = std::fabs(static_cast<double>(x));
  uint16_t best = 0;
  if (a >= 65520.0) best = 0x7c00;
  else {
    double best_err = 1e300;
    for (uint16_t h = 0; h < 0x7c00; ++h) {
      const double err = std::fabs(half_by_definition(h) - a);
      if (err < best_err || (err == best_err && (h & 1) == 0)) best = h, best_err = err;
    }
  }
  return static_cast<uint16_t>((std::signbit(x) ? 0x8000 : 0) | best);
}

TEST(Dtype, FloatToHalfRoundsToNearestEven) {
  std::mt19937 rng(5);
  std::vector<float> xs = {0.0f, -0.0f, 1.0f, 65504.0f, 65519.0f, 65520.0f, 1e-8f, 5.9604645e-8f, 2.98e-8f,
                           6.1035156e-5f, 6.09e-5f, 1.0009765625f, 1.00048828125f /* a tie: rounds to even */};
  for (int i = 0; i < 300; ++i) xs.push_back(std::ldexp(std::uniform_real_distribution<float>(-1, 1)(rng), int(rng() % 40) - 26));
  for (float x : xs) ASSERT_EQ(f32_to_f16(x), nearest_half(x)) << x;
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Dtype, Bfloat16RoundsToNearestEvenAndRoundTrips) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f808000)), 0x3f80);  // tie, even stays
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f818000)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f808001)), 0x3f81);  // above the tie
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  for (uint32_t h = 0; h < 65536; ++h) {  // every bf16 survives f32 and back
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (!std::isnan(f)) ASSERT_EQ(f32_to_bf16(f), h) << h;
  }
}

TEST(Dtype, ConvertBetweenFloatTypes) {
  std::vector<float> x = {1.5f, -2.25f, 3.0e-3f, 1000.0f};
  std::vector<uint16_t> h(4), b(4);
  std::vector<float> back(4);
  convert(x.data(), DType::kF32, h.data(), DType::kF16, 4);
  convert(h.data(), DType::kF16, b.data(), DType::kBF16, 4);
  convert(b.data(), DType::kBF16, back.data(), DType::kF32, 4);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(back[i], x[i], std::fabs(x[i]) * 1.0 / 128) << i;  // bf16: 8 bits
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_EQ(*dtype_from_name("i8"), DType::kI8);
  EXPECT_FALSE(dtype_from_name("f64").ok());
}

}  // namespace
}  // namespace memtrain
