// NF4 quantization (QLoRA): the issue's packing example byte for byte; every code the nearest table value (checked
// by brute force); dequantization error per element within half the widest gap of the table times the block's
// absmax, and smaller than symmetric int4's on normal weights (what NF4 is designed for); partial dequantization of
// a range equals the same range of the whole; double-quantized absmax within half the dynamic map's widest gap
// times its block scale; 4.127 bits per weight with double quantization; the matmuls through an NF4 weight (a
// panel dequantized at a time) equal the products with the weight dequantized whole.
#include "core/cpu/nf4.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/cpu/dynamic_map.h"

namespace memtrain::cpu {
namespace {

TEST(Nf4, PacksTheIssuesExampleHighNibbleFirst) {
  const std::vector<float> x = {1, -1, 0.5f, -0.5f, 0.1f, 0, 0.3f, -0.2f};
  std::vector<uint8_t> packed(4);
  float absmax = 0;
  nf4_quantize(x.data(), 8, packed.data(), &absmax, ThreadPool::global());
  EXPECT_EQ(absmax, 1.0f);
  EXPECT_EQ(packed, (std::vector<uint8_t>{0xF0, 0xC2, 0x87, 0xB5}));
}

TEST(Nf4, EveryCodeIsTheNearestValue) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const auto& v = nf4_values();
  for (int t = 0; t < 100000; ++t) {
    const float x = t < 16 ? v[t] : u(rng);
    int best = 0;
    for (int c = 1; c < 16; ++c) {
      if (std::fabs(x - v[c]) < std::fabs(x - v[best])) best = c;  // strict: the lower code on a tie
    }
    ASSERT_EQ(nf4_code(x), best) << x;
  }
}

TEST(Nf4, DequantizationErrorIsBoundedAndBeatsInt4OnNormalWeights) {
  const int64_t n = kNf4Block * 500;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> w(n);
  for (float& x : w) x = normal(rng);
  std::vector<uint8_t> packed(n / 2);
  std::vector<float> absmax(n / kNf4Block), back(n);
  nf4_quantize(w.data(), n, packed.data(), absmax.data(), ThreadPool::global());
  nf4_dequantize(packed.data(), absmax.data(), 0, n, back.data());
  double widest = 0;
  for (int c = 0; c < 15; ++c) widest = std::max<double>(widest, nf4_values()[c + 1] - nf4_values()[c]);
  double nf4_sq = 0, int4_sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double m = absmax[i / kNf4Block];
    ASSERT_LE(std::fabs(back[i] - w[i]), m * widest / 2 * (1 + 1e-6)) << i;
    nf4_sq += std::pow(back[i] - w[i], 2);
    const double int4 = std::round(w[i] / m * 7) / 7 * m;  // symmetric int4 with the same absmax
    int4_sq += std::pow(int4 - w[i], 2);
  }
  std::printf("relative RMS error on N(0, 0.02) weights: nf4 %.4f, int4 %.4f\n", std::sqrt(nf4_sq / n) / 0.02,
              std::sqrt(int4_sq / n) / 0.02);
  EXPECT_LT(nf4_sq, int4_sq);

  // A range in the middle (not block aligned) equals that range of the whole.
  std::vector<float> part(200);
  nf4_dequantize(packed.data(), absmax.data(), 1000, 200, part.data());
  for (int i = 0; i < 200; ++i) EXPECT_EQ(part[i], back[1000 + i]);
}

TEST(Nf4, DoubleQuantizedAbsmaxIsWithinItsBoundAndCosts4Point127Bits) {
  const int64_t weights = kNf4Block * kNf4AbsmaxBlock * 16, blocks = weights / kNf4Block;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(weights);
  for (float& x : w) x = normal(rng);
  std::vector<uint8_t> packed(weights / 2), codes(blocks);
  std::vector<float> absmax(blocks), scales(blocks / kNf4AbsmaxBlock), back(blocks);
  nf4_quantize(w.data(), weights, packed.data(), absmax.data(), ThreadPool::global());
  QuantizedAbsmax q{0, blocks, codes.data(), scales.data()};
  quantize_absmax(absmax.data(), q, ThreadPool::global());
  dequantize_absmax(q, 0, blocks, back.data());
  const CodeBook& book = dynamic_code_book(true);
  double widest = 0;
  for (int c = 0; c < 255; ++c) widest = std::max<double>(widest, book[c + 1] - book[c]);
  double mean = 0;
  for (float a : absmax) mean += a;
  EXPECT_NEAR(q.offset, mean / blocks, 1e-5);
  for (int64_t i = 0; i < blocks; ++i) {
    ASSERT_LE(std::fabs(back[i] - absmax[i]), scales[i / kNf4AbsmaxBlock] * widest / 2 + 1e-6) << i;
  }
  // Stored: the packed codes, one byte per absmax, one fp32 scale per 256 of them, the offset.
  const double bytes = packed.size() + codes.size() + 4.0 * scales.size() + 4.0;
  const double bits = 8 * bytes / static_cast<double>(weights);
  std::printf("bits per weight with double quantization: %.4f\n", bits);
  EXPECT_NEAR(bits, 4.127, 0.001);
}

// The matmuls through an NF4 weight against float64 products with the weight dequantized whole: shapes with one
// panel and with several, rows that do not end on a block boundary, and beta = 1 accumulating.
TEST(Nf4, MatmulsThroughTheQuantizedWeightMatchTheDequantizedProduct) {
  struct Shape3 {
    int64_t N, rows, cols;
  };
  for (const Shape3 s : {Shape3{7, 96, 160}, Shape3{5, 700, 200}, Shape3{3, 40, 2000}}) {
    SCOPED_TRACE(std::to_string(s.rows) + "x" + std::to_string(s.cols));
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const int64_t n = s.rows * s.cols, blocks = (n + kNf4Block - 1) / kNf4Block;
    std::vector<float> w(n), x(s.N * s.cols), dy(s.N * s.rows);
    for (float& v : w) v = normal(rng);
    for (float& v : x) v = normal(rng);
    for (float& v : dy) v = normal(rng);
    std::vector<uint8_t> packed(n / 2), codes(blocks);
    std::vector<float> absmax(blocks), scales((blocks + kNf4AbsmaxBlock - 1) / kNf4AbsmaxBlock);
    nf4_quantize(w.data(), n, packed.data(), absmax.data(), ThreadPool::global());
    Nf4Matrix m{s.rows, s.cols, packed.data(), {0, blocks, codes.data(), scales.data()}};
    quantize_absmax(absmax.data(), m.absmax, ThreadPool::global());
    // The weight as the kernels see it.
    std::vector<float> used_absmax(blocks), W(n);
    dequantize_absmax(m.absmax, 0, blocks, used_absmax.data());
    nf4_dequantize(packed.data(), used_absmax.data(), 0, n, W.data());

    std::vector<float> y(s.N * s.rows, 1.0f), dx(s.N * s.cols, 1.0f);
    nf4_matmul_xwt(x.data(), s.N, m, /*beta=*/1.0f, y.data(), ThreadPool::global());
    nf4_matmul_dyw(dy.data(), s.N, m, /*beta=*/1.0f, dx.data(), ThreadPool::global());
    for (int64_t i = 0; i < s.N; ++i) {
      for (int64_t r = 0; r < s.rows; ++r) {
        double ref = 1.0, mag = 0;
        for (int64_t c = 0; c < s.cols; ++c) {
          ref += static_cast<double>(x[i * s.cols + c]) * W[r * s.cols + c];
          mag += std::fabs(static_cast<double>(x[i * s.cols + c]) * W[r * s.cols + c]);
        }
        ASSERT_NEAR(y[i * s.rows + r], ref, 1e-6 * mag + 1e-6) << i << "," << r;
      }
      for (int64_t c = 0; c < s.cols; ++c) {
        double ref = 1.0, mag = 0;
        for (int64_t r = 0; r < s.rows; ++r) {
          ref += static_cast<double>(dy[i * s.rows + r]) * W[r * s.cols + c];
          mag += std::fabs(static_cast<double>(dy[i * s.rows + r]) * W[r * s.cols + c]);
        }
        ASSERT_NEAR(dx[i * s.cols + c], ref, 1e-6 * mag + 1e-6) << i << "," << c;
      }
    }
  }
}

}  // namespace
}  // namespace memtrain::cpu
