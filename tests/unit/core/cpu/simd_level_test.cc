// The run-time choice of instruction set: the MEMTRAIN_SIMD rule, ScopedSimdLevel, that kernels follow the level,
// and that the AVX-512 kernels give AVX2's bits wherever no sum changes order (every op there is exactly rounded).
#include "core/cpu/simd_level.h"

#include <gtest/gtest.h>

#include "core/cpu/adamw.h"
#include "core/cpu/gelu.h"
#include "core/cpu/kernel_table.h"
#include "core/cpu/swiglu.h"
#include "tests/unit/core/cpu/kernel_test_util.h"

namespace memtrain {
namespace {

using cpu::SimdLevel;
using namespace testing_util;

TEST(SimdLevel, EnvironmentRule) {
  EXPECT_EQ(cpu::choose_simd_level(nullptr, true), SimdLevel::kAvx512);
  EXPECT_EQ(cpu::choose_simd_level(nullptr, false), SimdLevel::kAvx2);
  EXPECT_EQ(cpu::choose_simd_level("", true), SimdLevel::kAvx512);
  EXPECT_EQ(cpu::choose_simd_level("avx2", true), SimdLevel::kAvx2);
  EXPECT_EQ(cpu::choose_simd_level("avx512", true), SimdLevel::kAvx512);
  EXPECT_EQ(cpu::choose_simd_level("avx512", false), SimdLevel::kAvx2);  // never above what the CPU has
  EXPECT_EQ(cpu::choose_simd_level("sse", true), SimdLevel::kAvx512);    // an unknown value keeps the detected one
  EXPECT_EQ(cpu::choose_simd_level("sse", false), SimdLevel::kAvx2);
}

TEST(SimdLevel, ScopedLevelSelectsTheTableAndRestores) {
  const SimdLevel before = cpu::simd_level();
  {
    cpu::ScopedSimdLevel avx2(SimdLevel::kAvx2);
    EXPECT_EQ(cpu::simd_level(), SimdLevel::kAvx2);
    EXPECT_EQ(&cpu::kernel_table(), &cpu::kAvx2Kernels);
    if (cpu::cpu_has_avx512()) {
      cpu::ScopedSimdLevel avx512(SimdLevel::kAvx512);
      EXPECT_EQ(&cpu::kernel_table(), &cpu::kAvx512Kernels);
    }
    EXPECT_EQ(cpu::simd_level(), SimdLevel::kAvx2);
  }
  EXPECT_EQ(cpu::simd_level(), before);
}

TEST(SimdLevel, ForcingAvx512WithoutItAborts) {
  if (cpu::cpu_has_avx512()) GTEST_SKIP() << "this CPU has AVX-512";
  EXPECT_DEATH(cpu::ScopedSimdLevel(SimdLevel::kAvx512), "lacks AVX-512");
}

template <class Fn>
std::vector<float> run_at(SimdLevel level, Fn fn) {
  cpu::ScopedSimdLevel scoped(level);
  return fn();
}

TEST(SimdLevel, ElementwiseKernelsGiveTheSameBitsAtBothWidths) {
  if (!cpu::cpu_has_avx512()) GTEST_SKIP() << "this CPU lacks AVX-512 F/BW/DQ/VL";
  const int64_t n = 40001;
  const std::vector<float> x = random_uniform(n, -10.0f, 10.0f, 1), u = random_uniform(n, -1.0f, 1.0f, 2);
  const auto gelu = [&] {
    std::vector<float> y(n), dx(n);
    cpu::gelu_forward(x.data(), y.data(), n, test_pool());
    cpu::gelu_backward(u.data(), x.data(), dx.data(), n, test_pool());
    y.insert(y.end(), dx.begin(), dx.end());
    return y;
  };
  const auto swiglu = [&] {
    std::vector<float> y(n), dg(n), du(n);
    cpu::swiglu_forward(x.data(), u.data(), y.data(), n, test_pool());
    cpu::swiglu_backward(u.data(), x.data(), u.data(), dg.data(), du.data(), n, test_pool());
    y.insert(y.end(), dg.begin(), dg.end());
    y.insert(y.end(), du.begin(), du.end());
    return y;
  };
  const auto adamw = [&] {
    std::vector<float> p = x, m(n, 0.0f), v(n, 0.0f);
    for (int t = 1; t <= 3; ++t) cpu::adamw_step(p.data(), u.data(), m.data(), v.data(), n, 1e-3f, 0.9f, 0.95f,
                                                 1e-8f, 0.1f, t, test_pool());
    return p;
  };
  EXPECT_EQ(run_at(SimdLevel::kAvx2, gelu), run_at(SimdLevel::kAvx512, gelu));
  EXPECT_EQ(run_at(SimdLevel::kAvx2, swiglu), run_at(SimdLevel::kAvx512, swiglu));
  EXPECT_EQ(run_at(SimdLevel::kAvx2, adamw), run_at(SimdLevel::kAvx512, adamw));
}

}  // namespace
}  // namespace memtrain
