// The vector exp and sigmoid against float64 std::exp over their whole range, and at the edges: the AVX2 names of
// vec_math.h directly, and both widths through the kernel table.
#include "core/cpu/vec_math.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/cpu/kernel_table.h"
#include "tests/unit/core/cpu/kernel_test_util.h"

namespace memtrain {
namespace {

float vexp(float x) { return _mm256_cvtss_f32(cpu::vec::exp(_mm256_set1_ps(x))); }
float vsigmoid(float x) { return _mm256_cvtss_f32(cpu::vec::sigmoid(_mm256_set1_ps(x))); }

TEST(VecMath, ExpIsAccurateToAFewUlp) {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 0.001237) {
    const float xf = static_cast<float>(x);
    const double ref = std::exp(static_cast<double>(xf));
    worst = std::max(worst, std::abs(vexp(xf) - ref) / ref);
  }
  // Cephes' expf polynomial is good to ~1.2e-7 (2 ulp); a wrong coefficient or a lost ln2 split errs by > 1e-6.
  EXPECT_LT(worst, 2.5e-7);
}

TEST(VecMath, ExpEdgesOverflowUnderflowAndNaN) {
  EXPECT_EQ(vexp(0.0f), 1.0f);
  EXPECT_EQ(vexp(-100.0f), 0.0f);
  EXPECT_EQ(vexp(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(vexp(100.0f), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(vexp(std::numeric_limits<float>::quiet_NaN())));
}

TEST(VecMath, SigmoidIsAccurateInBothTails) {
  double worst = 0;
  for (double x = -80.0; x <= 80.0; x += 0.00731) {
    const float xf = static_cast<float>(x);
    const double ref = 1 / (1 + std::exp(-static_cast<double>(xf)));
    worst = std::max(worst, std::abs(vsigmoid(xf) - ref) / ref);
  }
  // exp (2 ulp) plus one rounded add and one rounded divide: ~2.5e-7 relative, in the tails too.
  EXPECT_LT(worst, 4e-7);
  EXPECT_EQ(vsigmoid(-200.0f), 0.0f);
  EXPECT_EQ(vsigmoid(200.0f), 1.0f);
}

TEST(VecMath, SigmoidComplementKeepsItsRelativePrecision) {
  // 1 - sigmoid(x) for x >> 1 is tiny; computed as 1 - s it would carry s's absolute error (~6e-8) and be wrong
  // by 100% at x ~ 17. As e^-x * s it stays within a few ulp (same budget as sigmoid: 4e-7).
  double worst_s = 0, worst_c = 0;
  for (double x = -80.0; x <= 80.0; x += 0.00731) {
    const float xf = static_cast<float>(x);
    __m256 s, c;
    cpu::vec::sigmoid_and_complement(_mm256_set1_ps(xf), &s, &c);
    const double ref_s = 1 / (1 + std::exp(-double(xf))), ref_c = 1 / (1 + std::exp(double(xf)));
    worst_s = std::max(worst_s, std::abs(_mm256_cvtss_f32(s) - ref_s) / ref_s);
    worst_c = std::max(worst_c, std::abs(_mm256_cvtss_f32(c) - ref_c) / ref_c);
  }
  EXPECT_LT(worst_s, 4e-7);
  EXPECT_LT(worst_c, 4e-7);
  __m256 s, c;
  cpu::vec::sigmoid_and_complement(_mm256_set1_ps(-200.0f), &s, &c);  // e^200 = inf: s = 0, 1 - s = 1, no NaN
  EXPECT_EQ(_mm256_cvtss_f32(s), 0.0f);
  EXPECT_EQ(_mm256_cvtss_f32(c), 1.0f);
  cpu::vec::sigmoid_and_complement(_mm256_set1_ps(200.0f), &s, &c);
  EXPECT_EQ(_mm256_cvtss_f32(s), 1.0f);
  EXPECT_EQ(_mm256_cvtss_f32(c), 0.0f);
}

// The same checks on arrays, under each instruction set (kernel_table().exp is the exp every dispatched kernel uses).
class VecMathTable : public testing_util::SimdLevelTest {};
MEMTRAIN_INSTANTIATE_SIMD_LEVELS(VecMathTable);

constexpr float kInf = std::numeric_limits<float>::infinity(), kNaN = std::numeric_limits<float>::quiet_NaN();

// A grid over [lo, hi]; its size is not a multiple of 16, so the last vector is a masked tail at both widths.
std::vector<float> grid(double lo, double hi, double step) {
  std::vector<float> x;
  for (double v = lo; v <= hi; v += step) x.push_back(static_cast<float>(v));
  return x;
}

TEST_P(VecMathTable, ExpIsAccurateToAFewUlpWithItsEdges) {
  std::vector<float> x = grid(-87.0, 88.0, 0.001237);
  const size_t finite = x.size();
  for (float e : {0.0f, -100.0f, -kInf, 100.0f, kNaN}) x.push_back(e);
  std::vector<float> y(x.size());
  cpu::kernel_table().exp(x.data(), y.data(), static_cast<int64_t>(x.size()));
  double worst = 0;
  for (size_t i = 0; i < finite; ++i) {
    const double ref = std::exp(static_cast<double>(x[i]));
    worst = std::max(worst, std::abs(y[i] - ref) / ref);
  }
  EXPECT_LT(worst, 2.5e-7);  // as ExpIsAccurateToAFewUlp
  EXPECT_EQ(y[finite], 1.0f);
  EXPECT_EQ(y[finite + 1], 0.0f);
  EXPECT_EQ(y[finite + 2], 0.0f);
  EXPECT_EQ(y[finite + 3], kInf);
  EXPECT_TRUE(std::isnan(y[finite + 4]));
}

TEST_P(VecMathTable, SigmoidAndComplementAreAccurateInBothTails) {
  std::vector<float> x = grid(-80.0, 80.0, 0.00731);
  const size_t finite = x.size();
  for (float e : {-200.0f, 200.0f}) x.push_back(e);
  std::vector<float> s(x.size()), c(x.size());
  cpu::kernel_table().sigmoid_and_complement(x.data(), s.data(), c.data(), static_cast<int64_t>(x.size()));
  double worst_s = 0, worst_c = 0;
  for (size_t i = 0; i < finite; ++i) {
    const double ref_s = 1 / (1 + std::exp(-double(x[i]))), ref_c = 1 / (1 + std::exp(double(x[i])));
    worst_s = std::max(worst_s, std::abs(s[i] - ref_s) / ref_s);
    worst_c = std::max(worst_c, std::abs(c[i] - ref_c) / ref_c);
  }
  EXPECT_LT(worst_s, 4e-7);  // as SigmoidComplementKeepsItsRelativePrecision
  EXPECT_LT(worst_c, 4e-7);
  EXPECT_EQ(s[finite], 0.0f);  // e^200 = inf: s = 0, 1 - s = 1, no NaN
  EXPECT_EQ(c[finite], 1.0f);
  EXPECT_EQ(s[finite + 1], 1.0f);
  EXPECT_EQ(c[finite + 1], 0.0f);
}

}  // namespace
}  // namespace memtrain
