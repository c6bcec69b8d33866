// The 8-bit dynamic code books and blockwise quantization: the published spot values, nearest-code search
// against brute force, and the round trip error bound (each value comes back as the nearest code times absmax).
#include "core/cpu/dynamic_map.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <vector>

namespace memtrain::cpu {
namespace {

TEST(DynamicCodeBook, SignedAndUnsignedHaveTheirPublishedShape) {
  const CodeBook& s = dynamic_code_book(true);
  EXPECT_EQ(s[0], -0.99296874f);
  EXPECT_EQ(s[255], 1.0f);
  EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
  EXPECT_NE(std::find(s.begin(), s.end(), 0.0f), s.end());
  EXPECT_EQ(std::set<float>(s.begin(), s.end()).size(), 256u);
  // The smallest magnitude: 1e-6 times the midpoint of the one-interval linspace(0.1, 1, 2).
  EXPECT_FLOAT_EQ(*std::upper_bound(s.begin(), s.end(), 0.0f), 0.55e-6f);
  EXPECT_EQ(s.code.size(), 256u);
  const CodeBook& u = dynamic_code_book(false);
  EXPECT_EQ(u[0], 0.0f);
  EXPECT_EQ(u[255], 1.0f);
  EXPECT_TRUE(std::is_sorted(u.begin(), u.end()));
  EXPECT_EQ(std::set<float>(u.begin(), u.end()).size(), 256u);
  // Unsigned spends the sign bit on the fraction: twice the codes in the top decade [0.1, 1) as the signed book's
  // positive half (128 and 64).
  auto top_decade = [](const CodeBook& b) { return std::count_if(b.begin(), b.end(), [](float x) { return x > 0.1f && x < 1.0f; }); };
  EXPECT_EQ(top_decade(u), 128);
  EXPECT_EQ(top_decade(s), 64);
}

int brute_force_nearest(const CodeBook& book, float x) {
  int best = 0;
  for (int i = 1; i < 256; ++i)
    if (std::fabs(x - book[i]) < std::fabs(x - book[best])) best = i;  // ties keep the lower index
  return best;
}

TEST(DynamicCodeBook, NearestCodeIsTheNearest) {
  std::mt19937 rng(3);
  for (bool is_signed : {true, false}) {
    const CodeBook& book = dynamic_code_book(is_signed);
    std::uniform_real_distribution<float> dist(is_signed ? -1.1f : -0.1f, 1.1f);
    for (int k = 0; k < 20000; ++k) {
      const float x = k % 2 ? dist(rng) : dist(rng) * 1e-4f;  // half of them near zero, where codes are dense
      ASSERT_EQ(nearest_code(book, x), brute_force_nearest(book, x)) << x;
      ASSERT_EQ(nearest_code_by_search(book, x), brute_force_nearest(book, x)) << x;
    }
    for (int i = 0; i < 256; ++i) {
      EXPECT_EQ(nearest_code(book, book[i]), i);
      // Just either side of each code and of each midpoint: where a bucket search would slip.
      for (float y : {std::nextafter(book[i], -2.0f), std::nextafter(book[i], 2.0f)})
        EXPECT_EQ(nearest_code(book, y), brute_force_nearest(book, y)) << y;
      if (i < 255) {
        const float mid = (book[i] + book[i + 1]) / 2;
        for (float y : {std::nextafter(mid, -2.0f), mid, std::nextafter(mid, 2.0f)})
          EXPECT_EQ(nearest_code(book, y), brute_force_nearest(book, y)) << y;
      }
    }
  }
}

TEST(BlockwiseQuantization, RoundTripGivesTheNearestCodeTimesAbsmax) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (bool is_signed : {true, false}) {
    const CodeBook& book = dynamic_code_book(is_signed);
    for (int64_t n : {1, 255, 256, 1000, 4096}) {
      std::vector<float> x(n);
      for (float& v : x) {
        v = dist(rng);
        if (!is_signed) v *= v;  // >= 0, like a second moment
      }
      if (n >= 512) std::fill(x.begin() + 256, x.begin() + 512, 0.0f);    // an all-zero block
      const int64_t blocks = (n + 255) / 256;
      std::vector<uint8_t> codes(n);
      std::vector<float> absmax(blocks), back(n);
      quantize_blocks(book, x.data(), n, 256, codes.data(), absmax.data(), ThreadPool::global());
      dequantize_blocks(book, codes.data(), absmax.data(), n, 256, back.data(), ThreadPool::global());
      for (int64_t b = 0; b < blocks; ++b) {
        float m = 0;
        for (int64_t i = b * 256; i < std::min(n, (b + 1) * 256); ++i) m = std::max(m, std::fabs(x[i]));
        ASSERT_EQ(absmax[b], m);
      }
      for (int64_t i = 0; i < n; ++i) {
        const float a = absmax[i / 256];
        if (a == 0) {
          EXPECT_EQ(back[i], 0.0f);
          continue;
        }
        const int want = brute_force_nearest(book, x[i] / a);
        EXPECT_EQ(codes[i], want) << i;
        // The error is at most half the gap to the neighbouring code, times absmax.
        const float lo = want > 0 ? book[want - 1] : book[0], hi = want < 255 ? book[want + 1] : book[255];
        EXPECT_LE(std::fabs(back[i] - x[i]), 0.5f * std::max(book[want] - lo, hi - book[want]) * a * 1.0001f) << i;
      }
    }
  }
}

}  // namespace
}  // namespace memtrain::cpu
