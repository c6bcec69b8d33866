// SwiGLU kernels against a float64 reference and finite differences; aliasing.
#include "core/cpu/swiglu.h"

#include <gtest/gtest.h>

#include "tests/unit/core/cpu/kernel_test_util.h"

namespace memtrain {
namespace {

using namespace testing_util;

// Every test runs under AVX2 and under AVX-512 (kernel_test_util.h).
class SwigluCpu : public SimdLevelTest {};
MEMTRAIN_INSTANTIATE_SIMD_LEVELS(SwigluCpu);

double swiglu_ref(double g, double u) { return g / (1 + std::exp(-g)) * u; }  // silu(g) * u

const int64_t kSizes[] = {1, 7, 29, 64, 65, 4097, 40001};  // odd sizes: 8- and 16-wide tails; 40001: several tasks

TEST_P(SwigluCpu, ForwardMatchesFloat64Reference) {
  for (int64_t n : kSizes) {
    std::vector<float> g = random_uniform(n, -12.0f, 12.0f, n), u = random_uniform(n, -3.0f, 3.0f, 2 * n), y(n);
    cpu::swiglu_forward(g.data(), u.data(), y.data(), n, test_pool());
    for (int64_t i = 0; i < n; ++i) {
      const double ref = swiglu_ref(g[i], u[i]);
      // The vector sigmoid is good to ~3e-7 relative, two fp32 products add ~1e-7. A sign slip errs by > 1e-2.
      ASSERT_NEAR(y[i], ref, 1e-6 * (1.0 + std::abs(ref))) << "n=" << n << " i=" << i;
    }
  }
}

TEST_P(SwigluCpu, BackwardMatchesFiniteDifferences) {
  for (int64_t n : kSizes) {
    std::vector<float> g = random_uniform(n, -12.0f, 12.0f, 3 * n), u = random_uniform(n, -3.0f, 3.0f, 4 * n);
    std::vector<float> r = random_uniform(n, -1.0f, 1.0f, 5 * n), dg(n), du(n);
    cpu::swiglu_backward(r.data(), g.data(), u.data(), dg.data(), du.data(), n, test_pool());  // dy = r
    for (int64_t i = 0; i < n; ++i) {
      // y[i] depends on g[i], u[i] alone: central differences per element (h = 1e-6, good to ~1e-9) against
      // fp32 kernel error of ~5e-7 relative (sigmoid and its complement ~3e-7, then three roundings).
      const double h = 1e-6;
      const double ng = r[i] * (swiglu_ref(g[i] + h, u[i]) - swiglu_ref(g[i] - h, u[i])) / (2 * h);
      const double nu = r[i] * (swiglu_ref(g[i], u[i] + h) - swiglu_ref(g[i], u[i] - h)) / (2 * h);
      ASSERT_NEAR(dg[i], ng, 1e-6 * (1.0 + std::abs(ng))) << "n=" << n << " g=" << g[i];
      ASSERT_NEAR(du[i], nu, 1e-6 * (1.0 + std::abs(nu))) << "n=" << n << " g=" << g[i];
    }
  }
}

TEST_P(SwigluCpu, AliasedOutputsMatchSeparateOnes) {
  const int64_t n = 4097;
  const std::vector<float> g = random_uniform(n, -8.0f, 8.0f, 1), u = random_uniform(n, -3.0f, 3.0f, 2);
  const std::vector<float> dy = random_uniform(n, -1.0f, 1.0f, 3);
  std::vector<float> y(n), dg(n), du(n);
  cpu::swiglu_forward(g.data(), u.data(), y.data(), n, test_pool());
  cpu::swiglu_backward(dy.data(), g.data(), u.data(), dg.data(), du.data(), n, test_pool());
  std::vector<float> a = g, b = u;
  cpu::swiglu_forward(a.data(), u.data(), a.data(), n, test_pool());
  cpu::swiglu_forward(g.data(), b.data(), b.data(), n, test_pool());
  EXPECT_EQ(a, y);  // y may alias gate
  EXPECT_EQ(b, y);  // y may alias up
  a = dy, b = u;  // dgate over dy, dup over up
  cpu::swiglu_backward(a.data(), g.data(), b.data(), a.data(), b.data(), n, test_pool());
  EXPECT_EQ(a, dg);
  EXPECT_EQ(b, du);
  a = g, b = dy;  // dgate over gate, dup over dy
  cpu::swiglu_backward(b.data(), a.data(), u.data(), a.data(), b.data(), n, test_pool());
  EXPECT_EQ(a, dg);
  EXPECT_EQ(b, du);
}

}  // namespace
}  // namespace memtrain
