// Helpers shared by the CPU kernel tests: seeded random inputs, float64 dot products and norms, central finite
// differences of a float64 reference, and a fixture that runs a test under each instruction set.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/cpu/simd_level.h"
#include "core/thread_pool.h"

namespace memtrain::testing_util {

inline ThreadPool& test_pool() { return ThreadPool::global(); }  // test_main pins it to 2 threads

inline std::vector<float> random_uniform(int64_t n, float lo, float hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

template <class A, class B>
double dot(const std::vector<A>& a, const std::vector<B>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return s;
}

template <class A, class B>
double l2_diff(const std::vector<A>& a, const std::vector<B>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    s += d * d;
  }
  return std::sqrt(s);
}
template <class A>
double l2(const std::vector<A>& a) { return std::sqrt(dot(a, a)); }

// ||a - b||_2 / ||b||_2 over the whole tensor (DESIGN.md: "within eps relative").
template <class A, class B>
double rel_l2(const std::vector<A>& a, const std::vector<B>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    num += d * d;
    den += static_cast<double>(b[i]) * static_cast<double>(b[i]);
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

// Indices to difference: all of them for small tensors, else a stride through the tensor plus its last 17
// elements (where vector tails live), to keep the O(n^2) differencing fast.
inline std::vector<int64_t> fd_indices(int64_t n) {
  std::vector<int64_t> idx;
  const int64_t stride = n <= 512 ? 1 : n / 256;
  for (int64_t i = 0; i < n; i += stride) idx.push_back(i);
  for (int64_t i = std::max<int64_t>(n - 17, 0); i < n; ++i)
    if (idx.empty() || i > idx.back()) idx.push_back(i);
  return idx;
}

// Central differences of loss(p) at p = x for each index in idx. With h = 1e-6 on a float64 loss of order 1-100,
// truncation (~h^2 * f''') and rounding (~1e-16 * |L| / h) both stay below ~1e-8, far under fp32 kernel error.
inline std::vector<double> finite_differences(std::vector<double> x, const std::vector<int64_t>& idx,
                                              const std::function<double(const std::vector<double>&)>& loss,
                                              double h = 1e-6) {
  std::vector<double> g;
  g.reserve(idx.size());
  for (int64_t i : idx) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double lp = loss(x);
    x[i] = x0 - h;
    const double lm = loss(x);
    x[i] = x0;
    g.push_back((lp - lm) / (2 * h));
  }
  return g;
}

template <class T>
std::vector<T> gather(const std::vector<T>& v, const std::vector<int64_t>& idx) {
  std::vector<T> out;
  for (int64_t i : idx) out.push_back(v[i]);
  return out;
}

// Base of a TEST_P suite that runs each test once per instruction set the kernels dispatch to: derive the suite
// from it and add MEMTRAIN_INSTANTIATE_SIMD_LEVELS(Suite). The AVX-512 run is skipped on a CPU without it.
class SimdLevelTest : public ::testing::TestWithParam<cpu::SimdLevel> {
 protected:
  void SetUp() override {
    if (GetParam() == cpu::SimdLevel::kAvx512 && !cpu::cpu_has_avx512())
      GTEST_SKIP() << "this CPU lacks AVX-512 F/BW/DQ/VL, so the AVX-512 kernels cannot run here";
    level_.emplace(GetParam());
  }
  void TearDown() override { level_.reset(); }

 private:
  std::optional<cpu::ScopedSimdLevel> level_;
};

inline std::string simd_level_test_name(const ::testing::TestParamInfo<cpu::SimdLevel>& info) {
  return cpu::simd_level_name(info.param);
}

}  // namespace memtrain::testing_util

namespace memtrain::cpu {
// gtest prints a failing test's parameter with this (found by argument-dependent lookup).
inline void PrintTo(SimdLevel level, std::ostream* os) { *os << simd_level_name(level); }
}  // namespace memtrain::cpu

// Tests are named Suite.Test/avx2 and Suite.Test/avx512 (an empty prefix keeps the suite name first, which the
// "Slow*" filter of tests/CMakeLists.txt matches on).
#define MEMTRAIN_INSTANTIATE_SIMD_LEVELS(suite)                                                         \
  INSTANTIATE_TEST_SUITE_P(, suite,                                                                   \
                           ::testing::Values(::memtrain::cpu::SimdLevel::kAvx2,                       \
                                             ::memtrain::cpu::SimdLevel::kAvx512),                    \
                           ::memtrain::testing_util::simd_level_test_name)
