// AdamW against a float64 re-implementation of torch.optim.AdamW's formula over several steps.
#include "core/cpu/adamw.h"

#include <gtest/gtest.h>

#include "tests/unit/core/cpu/kernel_test_util.h"

namespace memtrain {
namespace {

using namespace testing_util;

// Every test runs under AVX2 and under AVX-512 (kernel_test_util.h).
class AdamWCpu : public SimdLevelTest {};
MEMTRAIN_INSTANTIATE_SIMD_LEVELS(AdamWCpu);

// Float64 oracle: torch 1.13 _single_tensor_adamw (non-amsgrad), written out as torch's docs state it.
struct AdamWRef {
  std::vector<double> p, m, v;
  std::vector<double> m_scale;  // m's recursion on |g|: the size of the terms that m sums (they may cancel)
  void step(const std::vector<float>& g, double lr, double b1, double b2, double eps, double wd, int64_t t) {
    const double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      m_scale[i] = b1 * m_scale[i] + (1 - b1) * std::abs(g[i]);
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const double denom = std::sqrt(v[i]) / std::sqrt(bc2) + eps;
      p[i] -= (lr / bc1) * m[i] / denom;
    }
  }
};

TEST_P(AdamWCpu, SeveralStepsMatchFloat64Reference) {
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
  constexpr int kSteps = 6;
  for (int64_t n : {1, 7, 29, 64, 65, 4097, 40001}) {  // odd sizes: 8- and 16-wide tails; 40001: several tasks
    std::vector<float> p = random_uniform(n, -1.0f, 1.0f, n), m(n, 0.0f), v(n, 0.0f);
    AdamWRef ref{to_double(p), std::vector<double>(n), std::vector<double>(n), std::vector<double>(n)};
    for (int t = 1; t <= kSteps; ++t) {
      // Gradients of mixed scales, so that m / sqrt(v) is not ~1 everywhere.
      std::vector<float> g = random_uniform(n, -1.0f, 1.0f, 100 * n + t);
      for (int64_t i = 0; i < n; i += 3) g[i] *= 1e-3f;
      cpu::adamw_step(p.data(), g.data(), m.data(), v.data(), n, lr, b1, b2, eps, wd, t, test_pool());
      ref.step(g, lr, b1, b2, eps, wd, t);
    }
    for (int64_t i = 0; i < n; ++i) {
      // Each step rounds p twice (~1.2e-7 of |p|) and the update ~lr (~2e-7 of it): after 6 steps < 1e-6 of |p|
      // plus 1e-8. m and v: two roundings per step, relative to the terms summed (m's may cancel when g changes
      // sign). A wrong bias correction or decay order errs by > 1e-4.
      ASSERT_NEAR(p[i], ref.p[i], 1e-6 * std::abs(ref.p[i]) + 1e-8) << "n=" << n << " i=" << i;
      ASSERT_NEAR(m[i], ref.m[i], 1e-6 * ref.m_scale[i]) << "n=" << n << " i=" << i;
      ASSERT_NEAR(v[i], ref.v[i], 1e-6 * std::abs(ref.v[i]) + 1e-15) << "n=" << n << " i=" << i;
    }
  }
}

TEST_P(AdamWCpu, FirstStepMovesEachWeightByAboutLr) {
  // At step 1, m_hat / sqrt(v_hat) = sign(g) (up to eps): the update is lr * sign(g) after the decay. An
  // independent check of the bias corrections that does not share the reference's formula.
  const float lr = 1e-3f;
  std::vector<float> p = {1.0f, -2.0f, 0.5f}, g = {0.3f, -4.0f, 1e-3f}, m(3, 0.0f), v(3, 0.0f);
  cpu::adamw_step(p.data(), g.data(), m.data(), v.data(), 3, lr, 0.9f, 0.999f, 1e-8f, 0.0f, 1, test_pool());
  EXPECT_NEAR(p[0], 1.0f - lr, 1e-6);
  EXPECT_NEAR(p[1], -2.0f + lr, 1e-6);
  EXPECT_NEAR(p[2], 0.5f - lr, 1e-6);  // eps = 1e-8 against |g| = 1e-3: 1e-5 of lr
}

}  // namespace
}  // namespace memtrain
