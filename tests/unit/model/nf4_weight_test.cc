// A tensor-parallel part of an NF4 weight (Nf4Weight::quantize_part) dequantizes to exactly the whole matrix's
// dequantized values at its rows and columns, bit for bit: rows picked from several ranges (GPT-2's fused q|k|v),
// a column range of a row-parallel split, and a matrix of several 256-block scale groups, so that a block's scale
// is looked up by its global index. Parts that would cut blocks are errors.
#include "model/nf4_weight.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace memtrain::model {
namespace {

TEST(Nf4Weight, PartsDequantizeToTheWholeMatrixsValues) {
  const int64_t rows = 96, cols = 512;  // 768 blocks: three scale groups
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> w(rows * cols);
  for (float& v : w) v = d(rng) * (1.0f + static_cast<float>(&v - w.data()) / static_cast<float>(w.size()));
  auto whole = Nf4Weight::quantize(w.data(), rows, cols);
  ASSERT_TRUE(whole.ok());
  std::vector<float> all(rows * cols);
  (*whole)->dequantize(all.data());

  struct Part {
    std::vector<int64_t> rows;
    int64_t c0, c1;
  };
  std::vector<int64_t> fused;  // rows 8..19, 40..51, 80..91
  for (int64_t start : {8, 40, 80})
    for (int64_t r = start; r < start + 12; ++r) fused.push_back(r);
  std::vector<int64_t> every(rows);
  for (int64_t r = 0; r < rows; ++r) every[r] = r;
  for (const Part& p : {Part{fused, 0, cols}, Part{every, 256, 512}, Part{every, 128, 192}}) {
    auto part = Nf4Weight::quantize_part(w.data(), rows, cols, p.rows, p.c0, p.c1);
    ASSERT_TRUE(part.ok()) << part.status();
    const int64_t width = p.c1 - p.c0, n = static_cast<int64_t>(p.rows.size());
    EXPECT_EQ((*part)->bytes(), Nf4Weight::part_bytes(n * width, rows * cols));
    std::vector<float> got(n * width);
    (*part)->dequantize(got.data());
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < width; ++c)
        ASSERT_EQ(got[r * width + c], all[p.rows[r] * cols + p.c0 + c]) << "row " << p.rows[r] << " col " << p.c0 + c;
  }
  EXPECT_FALSE(Nf4Weight::quantize_part(w.data(), rows, cols, every, 32, 160).ok());  // cuts blocks
}

}  // namespace
}  // namespace memtrain::model
