// Elementwise, bias and sum-of-squares kernels against float64 references; aliasing; thread-count independence.
#include "core/cpu/elementwise.h"

#include <gtest/gtest.h>

#include "tests/unit/core/cpu/kernel_test_util.h"

namespace memtrain {
namespace {

using namespace testing_util;

// Every test runs under AVX2 and under AVX-512 (kernel_test_util.h).
class ElementwiseCpu : public SimdLevelTest {};
MEMTRAIN_INSTANTIATE_SIMD_LEVELS(ElementwiseCpu);

const int64_t kSizes[] = {1, 7, 29, 64, 65, 4097, 40001};  // odd sizes: 8- and 16-wide tails; 40001: several tasks

// One fp32 operation on two floats equals the float64 result rounded once (double has > 2*24+2 bits), so these
// kernels must match the float64 reference exactly.
TEST_P(ElementwiseCpu, AddScaleAndAliasingAreExact) {
  for (int64_t n : kSizes) {
    const std::vector<float> a = random_uniform(n, -1.0f, 1.0f, n), b = random_uniform(n, -100.0f, 100.0f, 2 * n);
    std::vector<float> y(n), ya = a, yb = b, yi = a, ys = a;
    cpu::add(a.data(), b.data(), y.data(), n, test_pool());
    cpu::add(ya.data(), b.data(), ya.data(), n, test_pool());  // y may alias a
    cpu::add(a.data(), yb.data(), yb.data(), n, test_pool());  // y may alias b
    cpu::add_inplace(yi.data(), b.data(), n, test_pool());
    cpu::scale_inplace(ys.data(), -0.37f, n, test_pool());
    for (int64_t i = 0; i < n; ++i) {
      const float sum = static_cast<float>(double(a[i]) + double(b[i]));
      ASSERT_EQ(y[i], sum) << i;
      ASSERT_EQ(ya[i], sum) << i;
      ASSERT_EQ(yb[i], sum) << i;
      ASSERT_EQ(yi[i], sum) << i;
      ASSERT_EQ(ys[i], static_cast<float>(double(a[i]) * double(-0.37f))) << i;
    }
  }
}

TEST_P(ElementwiseCpu, AddBiasAddsToEveryRow) {
  for (int64_t C : {1, 7, 45, 65, 384}) {  // 45: a 13-lane tail at 16 wide
    const int64_t rows = 67;
    const std::vector<float> y0 = random_uniform(rows * C, -1.0f, 1.0f, C), bias = random_uniform(C, -1.0f, 1.0f, 9);
    std::vector<float> y = y0;
    cpu::add_bias(y.data(), bias.data(), rows, C, test_pool());
    for (int64_t i = 0; i < rows * C; ++i) ASSERT_EQ(y[i], static_cast<float>(double(y0[i]) + bias[i % C])) << i;
  }
}

TEST_P(ElementwiseCpu, BiasBackwardMatchesFiniteDifferences) {
  struct Case {
    int64_t rows, C;
  };
  for (const Case cs : {Case{1, 1}, Case{3, 7}, Case{5, 45}, Case{67, 65}, Case{300, 384}}) {
    const std::vector<float> x = random_uniform(cs.rows * cs.C, -1.0f, 1.0f, 1), bias = random_uniform(cs.C, -1, 1, 2);
    const std::vector<float> r = random_uniform(cs.rows * cs.C, -1.0f, 1.0f, 3);  // L = sum(r * (x + bias))
    const std::vector<float> d0 = random_uniform(cs.C, -1.0f, 1.0f, 4);
    std::vector<float> dbias = d0;  // bias_backward adds
    cpu::bias_backward(r.data(), cs.rows, cs.C, dbias.data(), test_pool());
    for (int64_t c = 0; c < cs.C; ++c) dbias[c] -= d0[c];
    auto loss = [&](const std::vector<double>& b) {
      double s = 0;
      for (int64_t i = 0; i < cs.rows * cs.C; ++i) s += r[i] * (x[i] + b[i % cs.C]);
      return s;
    };
    const auto idx = fd_indices(cs.C);
    const auto numeric = finite_differences(to_double(bias), idx, loss);
    // fp32 column sums of up to 300 terms of size <= 1 (relative L2 error ~1e-6); the loss is linear, so the
    // differences are good to ~1e-16 * |L| / h ~ 1e-8.
    EXPECT_LT(rel_l2(gather(dbias, idx), numeric), 1e-5) << cs.rows << "x" << cs.C;
  }
}

TEST_P(ElementwiseCpu, SumSquaresMatchesFloat64Reference) {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{65}, int64_t{4097}, int64_t{200001}}) {
    const std::vector<float> x = random_uniform(n, -3.0f, 3.0f, n);
    long double ref = 0;
    for (float v : x) ref += static_cast<long double>(v) * v;
    // Squares of floats are exact in double; n double adds lose at most ~n * 1e-16 relative.
    EXPECT_NEAR(cpu::sum_squares(x.data(), n, test_pool()), static_cast<double>(ref), 1e-12 * double(ref)) << n;
  }
}

TEST_P(ElementwiseCpu, ReductionsAreBitwiseIndependentOfThreadCount) {
  ThreadPool one(1), two(2), three(3);
  const int64_t rows = 3001, C = 65, n = 1000003;
  const std::vector<float> dy = random_uniform(rows * C, -1.0f, 1.0f, 5), x = random_uniform(n, -1.0f, 1.0f, 6);
  std::vector<float> d1(C, 0.5f), d2(C, 0.5f), d3(C, 0.5f);
  cpu::bias_backward(dy.data(), rows, C, d1.data(), one);
  cpu::bias_backward(dy.data(), rows, C, d2.data(), two);
  cpu::bias_backward(dy.data(), rows, C, d3.data(), three);
  EXPECT_EQ(d1, d2);
  EXPECT_EQ(d1, d3);
  const double s1 = cpu::sum_squares(x.data(), n, one);
  EXPECT_EQ(s1, cpu::sum_squares(x.data(), n, two));
  EXPECT_EQ(s1, cpu::sum_squares(x.data(), n, three));
}

}  // namespace
}  // namespace memtrain
