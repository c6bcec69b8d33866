// GaLore against a float64 re-implementation of galore_torch's AdamW (written out below: the top-r singular vectors
// from LAPACK's dgesvd in double, a different routine from the optimizer's sgesdd; Adam moments of the projection
// kept across refreshes; the update projected back, scaled, with galore_torch's step size and decay order), for a
// wide and a tall matrix over steps that cross projection refreshes, with fp32 and int8 (Q-GaLore) projections.
#include "optim/galore.h"

#include <gtest/gtest.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/memory.h"
#include "tests/unit/optim/float64_reference.h"

namespace memtrain::optim {
namespace {

// The top-r singular vectors of the smaller side in double, largest-magnitude element positive; with `int8`, each
// rounded as Q-GaLore stores it (127 steps of the vector's absmax).
std::vector<double> ref_projection(const std::vector<double>& G, int64_t m, int64_t n, int64_t r, bool int8) {
  const int64_t k = std::min(m, n), len = k;
  std::vector<double> a = G, s(k), u(m * k), vt(k * n), superb(k);
  EXPECT_EQ(LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'S', 'S', m, n, a.data(), n, s.data(), u.data(), k, vt.data(), n,
                           superb.data()),
            0);
  std::vector<double> P(r * len);
  for (int64_t row = 0; row < r; ++row) {
    double* p = P.data() + row * len;
    for (int64_t i = 0; i < len; ++i) p[i] = m <= n ? u[i * k + row] : vt[row * n + i];
    double big = 0, absmax = 0;
    for (int64_t i = 0; i < len; ++i) {
      if (std::abs(p[i]) > std::abs(big)) big = p[i];
      absmax = std::max(absmax, std::abs(p[i]));
    }
    for (int64_t i = 0; i < len; ++i) {
      if (big < 0) p[i] = -p[i];
      if (int8) p[i] = std::round(p[i] / absmax * 127) * absmax / 127;
    }
  }
  return P;
}

struct Ref {
  int64_t m, n, r;
  std::vector<double> w, M, V, P;  // M, V: r x n (m <= n) or m x r
};

void ref_step(Ref& s, const std::vector<double>& G, int t, double lr, const OptimConfig& c) {
  const bool rows = s.m <= s.n;
  const int64_t small = rows ? s.m : s.n;
  if ((t - 1) % c.update_proj_gap == 0) s.P = ref_projection(G, s.m, s.n, s.r, c.galore_int8_projection);
  const int64_t rm = rows ? s.r : s.m, rn = rows ? s.n : s.r;  // R is rm x rn
  std::vector<double> N(rm * rn);
  for (int64_t i = 0; i < rm; ++i) {
    for (int64_t j = 0; j < rn; ++j) {
      double x = 0;  // R = P G or G P^T
      for (int64_t l = 0; l < small; ++l) x += rows ? s.P[i * small + l] * G[l * s.n + j] : G[i * s.n + l] * s.P[j * small + l];
      double& M = s.M[i * rn + j];
      double& V = s.V[i * rn + j];
      M = c.beta1 * M + (1 - c.beta1) * x;
      V = c.beta2 * V + (1 - c.beta2) * x * x;
      N[i * rn + j] = M / (std::sqrt(V) + c.eps);
    }
  }
  const double step_size = lr * std::sqrt(1 - std::pow(c.beta2, t)) / (1 - std::pow(c.beta1, t));
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < s.n; ++j) {
      double back = 0;  // P^T N or N P
      for (int64_t k = 0; k < s.r; ++k) back += rows ? s.P[k * small + i] * N[k * rn + j] : N[i * rn + k] * s.P[k * small + j];
      double& w = s.w[i * s.n + j];
      w -= step_size * c.galore_scale * back;
      w -= lr * c.weight_decay * w;
    }
  }
}

TEST(GaLore, ProjectionIsTheTopSingularVectorsOfTheFloat64Svd) {
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (auto [m, n] : {std::pair<int64_t, int64_t>{12, 20}, {20, 12}}) {
    const MatrixProjection mp{m, n, 5};
    std::vector<float> G(m * n);
    for (float& g : G) g = d(rng);
    std::vector<float> P(mp.r * mp.small());
    ASSERT_TRUE(top_singular_vectors(G.data(), mp, P.data()).ok());
    const std::vector<double> want = ref_projection(std::vector<double>(G.begin(), G.end()), m, n, mp.r, false);
    for (size_t i = 0; i < P.size(); ++i) EXPECT_NEAR(P[i], want[i], 1e-5) << m << "x" << n << " element " << i;
  }
}

TEST(GaLore, StepsMatchTheFloat64Update) {
  for (bool int8 : {false, true}) {
    SCOPED_TRACE(int8 ? "int8 projection" : "fp32 projection");
    OptimConfig c;
    c.name = "galore_adamw";
    c.rank = 4;
    c.update_proj_gap = 3;  // three projections over 8 steps
    c.weight_decay = 0.1;
    c.galore_int8_projection = int8;
    model::ParamSet ps;
    ps.add("wide", {6, 10}, model::ParamKind::kWeight, {});
    ps.add("tall", {10, 6}, model::ParamKind::kWeight, {});
    ps.add("norm", {10}, model::ParamKind::kNorm, {});  // plain AdamW
    ASSERT_TRUE(ps.allocate().ok());
    std::mt19937 rng(3);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<Ref> refs;
    for (int k = 0; k < 2; ++k) {
      const auto& p = ps.all()[k];
      Ref r{p->local_shape[0], p->local_shape[1], 4, {}, {}, {}, {}};
      for (int64_t i = 0; i < p->value.numel(); ++i) r.w.push_back(p->value.f32()[i] = d(rng));
      r.M.assign(r.r * std::max(r.m, r.n), 0.0);
      r.V = r.M;
      refs.push_back(r);
    }
    auto opt = create_optimizer(whole_targets(ps), c);
    ASSERT_TRUE(opt.ok()) << opt.status();
    for (int t = 1; t <= 8; ++t) {
      for (const auto& p : ps.all())
        for (int64_t i = 0; i < p->grad.numel(); ++i) p->grad.f32()[i] = d(rng);
      for (int k = 0; k < 2; ++k) {
        const auto& p = ps.all()[k];
        ref_step(refs[k], std::vector<double>(p->grad.f32(), p->grad.f32() + p->grad.numel()), t, 1e-2, c);
      }
      ASSERT_TRUE((*opt)->step(1e-2).ok());
    }
    for (int k = 0; k < 2; ++k) {
      const auto& p = ps.all()[k];
      EXPECT_LT(testing::relative_difference(p->value, refs[k].w), 1e-5) << p->name;
    }
  }
}

TEST(GaLore, StateIsTheProjectionAndTwoProjectedMoments) {
  model::ParamSet ps;
  ps.add("w", {300, 200}, model::ParamKind::kWeight, {});
  ps.add("b", {200}, model::ParamKind::kBias, {});
  ASSERT_TRUE(ps.allocate().ok());
  for (bool int8 : {false, true}) {
    OptimConfig c;
    c.name = "galore_adamw";
    c.rank = 16;
    c.galore_int8_projection = int8;
    const std::vector<OptimTarget> targets = whole_targets(ps);
    MemoryTracker& mt = MemoryTracker::host();
    const int64_t before = mt.current(MemCategory::kOptimizerState);
    auto opt = create_optimizer(targets, c);
    ASSERT_TRUE(opt.ok());
    // P is 16 x 200 (the smaller side), the moments 16 x 300 twice; the bias's AdamW.
    const int64_t proj = int8 ? 16 * 200 + 4 * 16 : 4 * 16 * 200;
    const int64_t want = proj + 8 * 16 * 300 + 8 * 200;
    EXPECT_EQ(mt.current(MemCategory::kOptimizerState) - before, want);
    EXPECT_EQ(optimizer_state_bytes(targets[0], c) + optimizer_state_bytes(targets[1], c), want);
  }
}

}  // namespace
}  // namespace memtrain::optim
