// APOLLO and APOLLO-Mini against a float64 re-implementation of the reference code's update (written out below:
// project the gradient with P, AdamW moments of the projection, per-channel or tensor-wise scaling ||N|| / ||R||
// with N = m / (sqrt(v) + eps), the norm-growth limiter, the square root of the scale, the bias-corrected step
// size, then the decay), over steps that cross projection refreshes and engage the limiter, for a wide and a tall
// matrix; state bytes follow the formula.
#include "optim/apollo.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/memory.h"
#include "tests/unit/optim/float64_reference.h"

namespace memtrain::optim {
namespace {

struct Ref {
  int64_t m, n, r;
  std::vector<double> w, M, V;  // moments as (channel, k)
  double last = -1;
  int limited = 0;  // steps on which the limiter scaled the update down
};

void ref_step(Ref& s, const std::vector<double>& G, int t, double lr, const OptimConfig& c, bool mini,
              const std::string& name) {
  const bool by_rows = s.m <= s.n;
  const int64_t small = by_rows ? s.m : s.n, channels = by_rows ? s.n : s.m;
  std::vector<float> P(s.r * small);
  apollo_projection(9, name, (t - 1) / c.update_proj_gap, s.r, small, P.data());
  auto g = [&](int64_t ch, int64_t i) { return by_rows ? G[i * s.n + ch] : G[ch * s.n + i]; };
  std::vector<double> scale(channels);
  double a_all = 0, p_all = 0;
  for (int64_t ch = 0; ch < channels; ++ch) {
    double a = 0, p = 0;
    for (int64_t k = 0; k < s.r; ++k) {
      double rk = 0;
      for (int64_t i = 0; i < small; ++i) rk += P[k * small + i] * g(ch, i);
      double& M = s.M[ch * s.r + k];
      double& V = s.V[ch * s.r + k];
      M = c.beta1 * M + (1 - c.beta1) * rk;
      V = c.beta2 * V + (1 - c.beta2) * rk * rk;
      const double adam = M / (std::sqrt(V) + c.eps);
      a += adam * adam;
      p += rk * rk;
    }
    scale[ch] = std::sqrt(a) / (std::sqrt(p) + 1e-8);
    a_all += a;
    p_all += p;
  }
  if (mini) scale.assign(channels, std::sqrt(a_all) / (std::sqrt(p_all) + 1e-8));
  double norm = 0;
  for (int64_t ch = 0; ch < channels; ++ch)
    for (int64_t i = 0; i < small; ++i) norm += std::pow(g(ch, i) * scale[ch], 2);
  norm = std::sqrt(norm);
  double limit = 1;
  if (s.last >= 0) limit = std::max(norm / (s.last + 1e-8), 1.01) / 1.01;
  s.limited += limit > 1;
  s.last = norm / limit;
  const double alpha = std::sqrt(mini ? 128.0 : 1.0);
  const double step_size = lr * std::sqrt(1 - std::pow(c.beta2, t)) / (1 - std::pow(c.beta1, t));
  for (int64_t ch = 0; ch < channels; ++ch) {
    for (int64_t i = 0; i < small; ++i) {
      double& w = by_rows ? s.w[i * s.n + ch] : s.w[ch * s.n + i];
      w -= step_size * alpha * scale[ch] * g(ch, i) / limit;
      w -= lr * c.weight_decay * w;
    }
  }
}

TEST(Apollo, StepsMatchTheFloat64Update) {
  for (bool mini : {false, true}) {
    SCOPED_TRACE(mini ? "apollo_mini" : "apollo");
    OptimConfig c;
    c.name = mini ? "apollo_mini" : "apollo";
    c.rank = 4;
    c.update_proj_gap = 3;  // three projections over 8 steps
    c.weight_decay = 0.1;
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
      Ref r{p->local_shape[0], p->local_shape[1], mini ? 1 : 4, {}, {}, {}};
      for (int64_t i = 0; i < p->value.numel(); ++i) r.w.push_back(p->value.f32()[i] = d(rng));
      r.M.assign(r.r * std::max(r.m, r.n), 0.0);
      r.V = r.M;
      refs.push_back(r);
    }
    auto opt = create_optimizer(whole_targets(ps), c, 9);
    ASSERT_TRUE(opt.ok()) << opt.status();
    for (int t = 1; t <= 8; ++t) {
      for (const auto& p : ps.all())
        for (int64_t i = 0; i < p->grad.numel(); ++i) p->grad.f32()[i] = d(rng) * (t % 4 == 0 ? 5.0f : 1.0f);
      for (int k = 0; k < 2; ++k) {
        const auto& p = ps.all()[k];
        std::vector<double> G(p->grad.f32(), p->grad.f32() + p->grad.numel());
        ref_step(refs[k], G, t, 1e-3, c, mini, p->name);
      }
      ASSERT_TRUE((*opt)->step(1e-3).ok());
    }
    for (int k = 0; k < 2; ++k) {
      const auto& p = ps.all()[k];
      EXPECT_LT(testing::relative_difference(p->value, refs[k].w), 1e-5) << p->name;
      EXPECT_GT(refs[k].limited, 0) << p->name << ": the limiter was never exercised";
    }
  }
}

TEST(Apollo, StateIsTwoProjectedMoments) {
  model::ParamSet ps;
  ps.add("w", {300, 200}, model::ParamKind::kWeight, {});
  ps.add("b", {200}, model::ParamKind::kBias, {});
  ASSERT_TRUE(ps.allocate().ok());
  for (bool mini : {false, true}) {
    OptimConfig c;
    c.name = mini ? "apollo_mini" : "apollo";
    c.rank = 16;
    const std::vector<OptimTarget> targets = whole_targets(ps);
    MemoryTracker& mt = MemoryTracker::host();
    const int64_t before = mt.current(MemCategory::kOptimizerState);
    auto opt = create_optimizer(targets, c);
    ASSERT_TRUE(opt.ok());
    const int64_t want = 8 * (mini ? 1 : 16) * 300 + 8 * 200;  // r x the larger side, twice; the bias's AdamW
    EXPECT_EQ(mt.current(MemCategory::kOptimizerState) - before, want);
    EXPECT_EQ(optimizer_state_bytes(targets[0], c) + optimizer_state_bytes(targets[1], c), want);
  }
}

}  // namespace
}  // namespace memtrain::optim
