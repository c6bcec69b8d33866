// GELU (tanh approximation) kernels against a float64 reference and finite differences; aliasing.
#include "core/cpu/gelu.h"

#include <gtest/gtest.h>

#include "tests/unit/core/cpu/kernel_test_util.h"

namespace memtrain {
namespace {

using namespace testing_util;

// Every test runs under AVX2 and under AVX-512 (kernel_test_util.h).
class GeluCpu : public SimdLevelTest {};
MEMTRAIN_INSTANTIATE_SIMD_LEVELS(GeluCpu);

// Float64 oracle: torch's gelu(approximate='tanh').
double gelu_ref(double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }

// Odd sizes catch vector-tail bugs (29 leaves 13 lanes at 16 wide, 5 at 8 wide); 40001 spans several pool tasks.
const int64_t kSizes[] = {1, 7, 29, 64, 65, 4097, 40001};

std::vector<float> inputs(int64_t n, uint64_t seed) {
  std::vector<float> x = random_uniform(n, -6.0f, 6.0f, seed);
  const float edges[] = {0.0f, -0.0f, 1e-20f, -30.0f, 30.0f, -100.0f, 100.0f};
  for (size_t i = 0; i < std::size(edges) && i < x.size(); ++i) x[(i * 7919) % n] = edges[i];
  return x;
}

TEST_P(GeluCpu, ForwardMatchesFloat64Reference) {
  for (int64_t n : kSizes) {
    std::vector<float> x = inputs(n, n), y(n);
    cpu::gelu_forward(x.data(), y.data(), n, test_pool());
    for (int64_t i = 0; i < n; ++i) {
      const double ref = gelu_ref(x[i]);
      // The vector exp/sigmoid are good to ~3e-7 relative; a wrong constant errs by > 1e-3.
      ASSERT_NEAR(y[i], ref, 1e-6 * (1.0 + std::abs(ref))) << "n=" << n << " x=" << x[i];
    }
  }
}

TEST_P(GeluCpu, BackwardMatchesFiniteDifferences) {
  for (int64_t n : kSizes) {
    std::vector<float> x = inputs(n, 100 + n), r = random_uniform(n, -1.0f, 1.0f, 200 + n), dx(n);
    cpu::gelu_backward(r.data(), x.data(), dx.data(), n, test_pool());  // L = sum(r * y), so dy = r
    for (int64_t i = 0; i < n; ++i) {
      // y[i] depends on x[i] alone, so dL/dx[i] is r[i] times the central difference of gelu_ref at x[i]. With
      // h = 1e-6 that is good to ~1e-9. The kernel forms gelu' from s = sigmoid(2u) and 1 - s (each ~3e-7
      // relative, 1 - s without cancellation), so it is good to ~3e-7 of (1 + |gelu'|); a sign error errs by > 1e-2.
      const double h = 1e-6, numeric = r[i] * (gelu_ref(x[i] + h) - gelu_ref(x[i] - h)) / (2 * h);
      ASSERT_NEAR(dx[i], numeric, 1e-6 * (1.0 + std::abs(numeric))) << "n=" << n << " x=" << x[i];
    }
  }
}

TEST_P(GeluCpu, InPlaceMatchesOutOfPlace) {
  const int64_t n = 4097;
  std::vector<float> x = inputs(n, 7), dy = random_uniform(n, -1.0f, 1.0f, 8), y(n), dx(n);
  cpu::gelu_forward(x.data(), y.data(), n, test_pool());
  cpu::gelu_backward(dy.data(), x.data(), dx.data(), n, test_pool());
  std::vector<float> xy = x, dd = dy;
  cpu::gelu_backward(dd.data(), x.data(), dd.data(), n, test_pool());
  EXPECT_EQ(dd, dx);  // dx may alias dy
  cpu::gelu_forward(xy.data(), xy.data(), n, test_pool());
  EXPECT_EQ(xy, y);  // x and y may alias
}

}  // namespace
}  // namespace memtrain
