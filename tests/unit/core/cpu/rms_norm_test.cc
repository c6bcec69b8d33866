// RMSNorm kernels against a float64 reference, finite differences, thread-count independence and aliasing.
#include "core/cpu/rms_norm.h"

#include <gtest/gtest.h>

#include "tests/unit/core/cpu/kernel_test_util.h"

namespace memtrain {
namespace {

using namespace testing_util;

// Every test runs under AVX2 and under AVX-512 (kernel_test_util.h).
class RmsNormCpu : public SimdLevelTest {};
MEMTRAIN_INSTANTIATE_SIMD_LEVELS(RmsNormCpu);

// Float64 oracle, as LLaMA's RMSNorm: y = x / sqrt(mean(x^2) + eps) * w. Returns y; rstd into *rstd if given.
std::vector<double> rms_norm_ref(const std::vector<double>& x, const std::vector<double>& w, double eps,
                                 int64_t rows, int64_t C, std::vector<double>* rstd = nullptr) {
  std::vector<double> y(rows * C);
  if (rstd) rstd->assign(rows, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double ms = 0;
    for (int64_t c = 0; c < C; ++c) ms += x[r * C + c] * x[r * C + c] / C;
    const double s = 1 / std::sqrt(ms + eps);
    for (int64_t c = 0; c < C; ++c) y[r * C + c] = x[r * C + c] * s * w[c];
    if (rstd) (*rstd)[r] = s;
  }
  return y;
}

struct Case {
  int64_t rows, C;
};
const Case kCases[] = {{1, 1}, {3, 7}, {4, 16}, {3, 45}, {5, 65}, {2, 384}, {1, 4097}};  // odd widths: vector tails
constexpr float kEps = 1e-6f;

TEST_P(RmsNormCpu, ForwardMatchesFloat64Reference) {
  for (const Case& cs : kCases) {
    const int64_t n = cs.rows * cs.C;
    std::vector<float> x = random_uniform(n, -3.0f, 3.0f, 1 + n), w = random_uniform(cs.C, 0.5f, 1.5f, 2 + n);
    std::vector<float> y(n), rstd(cs.rows);
    cpu::rms_norm_forward(x.data(), w.data(), kEps, cs.rows, cs.C, y.data(), rstd.data(), test_pool());
    std::vector<double> rstd_ref;
    const std::vector<double> ref = rms_norm_ref(to_double(x), to_double(w), kEps, cs.rows, cs.C, &rstd_ref);
    // fp32 sum of squares over <= 4097 terms: ~1e-6 relative; |y| <= ~3 (a wrong eps placement or missing weight
    // errs by > 1e-2).
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], ref[i], 1e-5) << "rows=" << cs.rows << " C=" << cs.C << " i=" << i;
    for (int64_t r = 0; r < cs.rows; ++r) EXPECT_NEAR(rstd[r], rstd_ref[r], 1e-5 * rstd_ref[r]);
  }
}

TEST_P(RmsNormCpu, BackwardMatchesFiniteDifferences) {
  for (const Case& cs : kCases) {
    const int64_t n = cs.rows * cs.C, rows = cs.rows, C = cs.C;
    std::vector<float> x = random_uniform(n, -2.0f, 2.0f, 10 + n), w = random_uniform(C, 0.5f, 1.5f, 11 + n);
    std::vector<float> r = random_uniform(n, -1.0f, 1.0f, 12 + n);  // L = sum(r * y), so dy = r
    const std::vector<float> dw0 = random_uniform(C, -1.0f, 1.0f, 13 + n);
    std::vector<float> y(n), rstd(rows), dx(n), dw = dw0;  // dweight must be added to, not overwritten
    cpu::rms_norm_forward(x.data(), w.data(), kEps, rows, C, y.data(), rstd.data(), test_pool());
    cpu::rms_norm_backward(r.data(), x.data(), rstd.data(), w.data(), rows, C, dx.data(), dw.data(), test_pool());
    for (int64_t c = 0; c < C; ++c) dw[c] -= dw0[c];
    const std::vector<double> xd = to_double(x), wd = to_double(w);
    const auto ix = fd_indices(n), iw = fd_indices(C);
    const auto gx = finite_differences(xd, ix, [&](const auto& v) { return dot(r, rms_norm_ref(v, wd, kEps, rows, C)); });
    const auto gw = finite_differences(wd, iw, [&](const auto& v) { return dot(r, rms_norm_ref(xd, v, kEps, rows, C)); });
    // dx = rstd * g - x * rstd^3 * mean(g * x) (g = dy * w) cancels when C is tiny (at C = 1 the two terms agree
    // to eps / x^2), so fp32 error is ~1e-6 of the terms, not of dx: measure the error against the larger of
    // ||dx|| and ||rstd * g||. Finite differences are good to ~1e-8. A wrong term errs by > 1e-2.
    std::vector<double> first_term;
    for (int64_t i : ix) first_term.push_back(double(rstd[i / C]) * r[i] * w[i % C]);
    EXPECT_LT(l2_diff(gather(dx, ix), gx), 1e-5 * std::max(l2(gx), l2(first_term)))
        << "rows=" << rows << " C=" << C;
    EXPECT_LT(rel_l2(gather(dw, iw), gw), 1e-5) << "rows=" << rows << " C=" << C;
  }
}

std::pair<std::vector<float>, std::vector<float>> run_backward(ThreadPool& pool, int64_t rows, int64_t C) {
  const int64_t n = rows * C;
  std::vector<float> x = random_uniform(n, -2.0f, 2.0f, 21), w = random_uniform(C, 0.5f, 1.5f, 22);
  std::vector<float> dy = random_uniform(n, -1.0f, 1.0f, 23), y(n), rstd(rows), dx(n), dw(C, 0.5f);
  cpu::rms_norm_forward(x.data(), w.data(), kEps, rows, C, y.data(), rstd.data(), pool);
  cpu::rms_norm_backward(dy.data(), x.data(), rstd.data(), w.data(), rows, C, dx.data(), dw.data(), pool);
  return {dx, dw};
}

TEST_P(RmsNormCpu, BackwardIsBitwiseIndependentOfThreadCount) {
  ThreadPool one(1), two(2), three(3);
  for (const Case& cs : {Case{3001, 33}, Case{2048, 384}}) {  // several row chunks, then reduced in order
    const auto a = run_backward(one, cs.rows, cs.C), b = run_backward(two, cs.rows, cs.C),
               c = run_backward(three, cs.rows, cs.C);
    EXPECT_EQ(a.first, b.first);
    EXPECT_EQ(a.second, b.second);
    EXPECT_EQ(a.second, c.second);
  }
}

TEST_P(RmsNormCpu, InPlaceMatchesOutOfPlace) {
  const int64_t rows = 9, C = 65, n = rows * C;
  std::vector<float> x = random_uniform(n, -2.0f, 2.0f, 31), w = random_uniform(C, 0.5f, 1.5f, 32);
  std::vector<float> dy = random_uniform(n, -1.0f, 1.0f, 34), y(n), rstd(rows), dx(n), dw(C, 0.0f);
  cpu::rms_norm_forward(x.data(), w.data(), kEps, rows, C, y.data(), rstd.data(), test_pool());
  cpu::rms_norm_backward(dy.data(), x.data(), rstd.data(), w.data(), rows, C, dx.data(), dw.data(), test_pool());
  std::vector<float> xy = x, dd = dy;
  cpu::rms_norm_forward(xy.data(), w.data(), kEps, rows, C, xy.data(), rstd.data(), test_pool());
  EXPECT_EQ(xy, y);  // x and y may alias
  cpu::rms_norm_backward(dd.data(), x.data(), rstd.data(), w.data(), rows, C, dd.data(), dw.data(), test_pool());
  EXPECT_EQ(dd, dx);  // dx may alias dy
}

}  // namespace
}  // namespace memtrain
