// LayerNorm kernels against a float64 reference, finite differences, thread-count independence and aliasing.
#include "core/cpu/layer_norm.h"

#include <gtest/gtest.h>

#include "tests/unit/core/cpu/kernel_test_util.h"

namespace memtrain {
namespace {

using namespace testing_util;

// Every test runs under AVX2 and under AVX-512 (kernel_test_util.h).
class LayerNormCpu : public SimdLevelTest {};
MEMTRAIN_INSTANTIATE_SIMD_LEVELS(LayerNormCpu);

struct LnRef {
  std::vector<double> y, mean, rstd;
};

// Float64 oracle, written for clarity: biased variance, as torch's layer_norm.
LnRef layer_norm_ref(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>* b,
                     double eps, int64_t rows, int64_t C) {
  LnRef out{std::vector<double>(rows * C), std::vector<double>(rows), std::vector<double>(rows)};
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mean += x[r * C + c] / C;
    for (int64_t c = 0; c < C; ++c) var += (x[r * C + c] - mean) * (x[r * C + c] - mean) / C;
    const double rstd = 1 / std::sqrt(var + eps);
    for (int64_t c = 0; c < C; ++c)
      out.y[r * C + c] = (x[r * C + c] - mean) * rstd * w[c] + (b ? (*b)[c] : 0.0);
    out.mean[r] = mean;
    out.rstd[r] = rstd;
  }
  return out;
}

struct Case {
  int64_t rows, C;
};
// Odd widths catch vector-tail bugs (1 and 7 are all tail, 65 and 4097 one past a vector, 45 leaves 13 lanes at 16
// wide after the two-accumulator loop).
const Case kCases[] = {{1, 1}, {3, 7}, {4, 16}, {3, 45}, {5, 65}, {2, 384}, {1, 4097}};
constexpr float kEps = 1e-5f;

TEST_P(LayerNormCpu, ForwardMatchesFloat64Reference) {
  for (const Case& cs : kCases) {
    for (bool with_bias : {true, false}) {
      const int64_t n = cs.rows * cs.C;
      // An offset of 3 makes |mean| > std, where a one-pass variance would lose digits.
      std::vector<float> x = random_uniform(n, 1.0f, 5.0f, 1 + n);
      std::vector<float> w = random_uniform(cs.C, 0.5f, 1.5f, 2 + n), b = random_uniform(cs.C, -1.0f, 1.0f, 3 + n);
      std::vector<float> y(n), mean(cs.rows), rstd(cs.rows);
      cpu::layer_norm_forward(x.data(), w.data(), with_bias ? b.data() : nullptr, kEps, cs.rows, cs.C, y.data(),
                              mean.data(), rstd.data(), test_pool());
      const std::vector<double> bd = to_double(b);
      LnRef ref = layer_norm_ref(to_double(x), to_double(w), with_bias ? &bd : nullptr, kEps, cs.rows, cs.C);
      // fp32 sums over up to 4097 elements of size ~5 err by ~1e-6 relative; |y| <= ~4. A wrong formula (say the
      // unbiased variance) errs by > 1e-4 at C = 4097 and by far more at small C.
      for (int64_t i = 0; i < n; ++i)
        ASSERT_NEAR(y[i], ref.y[i], 2e-5) << "rows=" << cs.rows << " C=" << cs.C << " i=" << i;
      for (int64_t r = 0; r < cs.rows; ++r) {
        EXPECT_NEAR(mean[r], ref.mean[r], 1e-6 * ref.mean[r]) << cs.C;
        EXPECT_NEAR(rstd[r], ref.rstd[r], 1e-5 * ref.rstd[r]) << cs.C;
      }
    }
  }
}

TEST_P(LayerNormCpu, BackwardMatchesFiniteDifferences) {
  for (const Case& cs : kCases) {
    for (bool with_bias : {true, false}) {
      const int64_t n = cs.rows * cs.C, C = cs.C, rows = cs.rows;
      std::vector<float> x = random_uniform(n, -2.0f, 2.0f, 10 + n);
      std::vector<float> w = random_uniform(C, 0.5f, 1.5f, 11 + n), b = random_uniform(C, -1.0f, 1.0f, 12 + n);
      std::vector<float> r = random_uniform(n, -1.0f, 1.0f, 13 + n);  // L = sum(r * y), so dy = r
      std::vector<float> y(n), mean(rows), rstd(rows), dx(n);
      const std::vector<float> dw0 = random_uniform(C, -1.0f, 1.0f, 14 + n), db0 = random_uniform(C, -1.0f, 1.0f, 15);
      std::vector<float> dw = dw0, db = db0;  // nonzero: backward must add into them
      cpu::layer_norm_forward(x.data(), w.data(), with_bias ? b.data() : nullptr, kEps, rows, C, y.data(),
                              mean.data(), rstd.data(), test_pool());
      cpu::layer_norm_backward(r.data(), x.data(), mean.data(), rstd.data(), w.data(), rows, C, dx.data(), dw.data(),
                               with_bias ? db.data() : nullptr, test_pool());
      if (!with_bias) {
        EXPECT_EQ(db, db0);  // dbias == nullptr: untouched
      }
      for (int64_t c = 0; c < C; ++c) {
        dw[c] -= dw0[c];
        db[c] -= db0[c];
      }
      const std::vector<double> xd = to_double(x), wd = to_double(w), bd = to_double(b);
      auto loss = [&](const std::vector<double>& xv, const std::vector<double>& wv, const std::vector<double>& bv) {
        return dot(r, layer_norm_ref(xv, wv, with_bias ? &bv : nullptr, kEps, rows, C).y);
      };
      const auto ix = fd_indices(n), iw = fd_indices(C);
      const auto gx = finite_differences(xd, ix, [&](const auto& v) { return loss(v, wd, bd); });
      const auto gw = finite_differences(wd, iw, [&](const auto& v) { return loss(xd, v, bd); });
      // fp32 row sums of ~C terms of size ~1 give ~1e-6 relative error in each gradient; finite differences are
      // good to ~1e-8. 1e-5 relative (L2 over the tensor) leaves room; a wrong sign or term errs by > 1e-2.
      EXPECT_LT(rel_l2(gather(dx, ix), gx), 1e-5) << "rows=" << rows << " C=" << C;
      EXPECT_LT(rel_l2(gather(dw, iw), gw), 1e-5) << "rows=" << rows << " C=" << C;
      if (with_bias) {
        const auto gb = finite_differences(bd, iw, [&](const auto& v) { return loss(xd, wd, v); });
        EXPECT_LT(rel_l2(gather(db, iw), gb), 1e-5) << "rows=" << rows << " C=" << C;
      }
    }
  }
}

struct Grads {
  std::vector<float> dx, dw, db;
};

Grads run_backward(ThreadPool& pool, int64_t rows, int64_t C) {
  const int64_t n = rows * C;
  std::vector<float> x = random_uniform(n, -2.0f, 2.0f, 21), w = random_uniform(C, 0.5f, 1.5f, 22);
  std::vector<float> dy = random_uniform(n, -1.0f, 1.0f, 23), y(n), mean(rows), rstd(rows);
  cpu::layer_norm_forward(x.data(), w.data(), nullptr, kEps, rows, C, y.data(), mean.data(), rstd.data(), pool);
  Grads g{std::vector<float>(n), std::vector<float>(C, 0.5f), std::vector<float>(C, -0.25f)};
  cpu::layer_norm_backward(dy.data(), x.data(), mean.data(), rstd.data(), w.data(), rows, C, g.dx.data(),
                           g.dw.data(), g.db.data(), pool);
  return g;
}

TEST_P(LayerNormCpu, BackwardIsBitwiseIndependentOfThreadCount) {
  ThreadPool one(1), two(2), three(3);
  for (const Case& cs : {Case{3001, 33}, Case{2048, 384}}) {  // several row chunks, then reduced in order
    const Grads a = run_backward(one, cs.rows, cs.C), b = run_backward(two, cs.rows, cs.C),
                c = run_backward(three, cs.rows, cs.C);
    EXPECT_EQ(a.dx, b.dx);
    EXPECT_EQ(a.dw, b.dw);
    EXPECT_EQ(a.db, b.db);
    EXPECT_EQ(a.dw, c.dw);
    EXPECT_EQ(a.db, c.db);
  }
}

TEST_P(LayerNormCpu, InPlaceMatchesOutOfPlace) {
  const int64_t rows = 9, C = 65, n = rows * C;
  std::vector<float> x = random_uniform(n, -2.0f, 2.0f, 31), w = random_uniform(C, 0.5f, 1.5f, 32);
  std::vector<float> b = random_uniform(C, -1.0f, 1.0f, 33), dy = random_uniform(n, -1.0f, 1.0f, 34);
  std::vector<float> y(n), mean(rows), rstd(rows), dx(n), dw(C, 0.0f), db(C, 0.0f);
  cpu::layer_norm_forward(x.data(), w.data(), b.data(), kEps, rows, C, y.data(), mean.data(), rstd.data(),
                          test_pool());
  cpu::layer_norm_backward(dy.data(), x.data(), mean.data(), rstd.data(), w.data(), rows, C, dx.data(), dw.data(),
                           db.data(), test_pool());
  std::vector<float> xy = x, dd = dy;
  cpu::layer_norm_forward(xy.data(), w.data(), b.data(), kEps, rows, C, xy.data(), mean.data(), rstd.data(),
                          test_pool());
  EXPECT_EQ(xy, y);  // x and y may alias
  cpu::layer_norm_backward(dd.data(), x.data(), mean.data(), rstd.data(), w.data(), rows, C, dd.data(), dw.data(),
                           db.data(), test_pool());
  EXPECT_EQ(dd, dx);  // dx may alias dy
}

}  // namespace
}  // namespace memtrain
