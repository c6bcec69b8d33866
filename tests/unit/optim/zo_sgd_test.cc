// Zeroth-order SGD (MeZO): the SPSA estimate g z, with g = (L(theta + eps z) - L(theta - eps z)) / (2 eps), is an
// unbiased estimate of the gradient (E[z z^T] = I); averaged over many steps' directions it must approach the true
// gradient of a smooth non-quadratic loss, computed analytically in float64, within a statistical bound. Also: the
// update's formula against a float64 re-implementation, the perturbations returning the values, and a tensor-parallel
// part drawing exactly its slice of the whole tensor's direction.
#include "optim/zo_sgd.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace memtrain::optim {
namespace {

model::Param make_param(const std::string& name, Shape shape, model::ParamKind kind = model::ParamKind::kWeight) {
  model::Param p;
  p.name = name;
  p.shape = shape;
  p.local_shape = shape;
  p.kind = kind;
  return p;
}

// L(theta) = sum_i a_i theta_i^2 / 2 + theta_i^4 / 4, so dL/dtheta_i = a_i theta_i + theta_i^3.
double loss(const std::vector<float>& theta, const std::vector<double>& a) {
  double l = 0;
  for (size_t i = 0; i < theta.size(); ++i) {
    const double t = theta[i];
    l += a[i] * t * t / 2 + t * t * t * t / 4;
  }
  return l;
}

TEST(ZoSgd, TheSpsaEstimateAveragesToTheGradient) {
  const int64_t n = 12;
  model::Param p = make_param("w", {3, 4});
  std::vector<float> theta(n);
  std::vector<double> a(n), grad(n);
  double grad_sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    theta[i] = 0.3f * static_cast<float>(i % 5) - 0.5f;
    a[i] = 1.0 + 0.25 * static_cast<double>(i);
    grad[i] = a[i] * theta[i] + std::pow(static_cast<double>(theta[i]), 3);
    grad_sq += grad[i] * grad[i];
  }
  OptimConfig cfg;
  cfg.name = "zo_sgd";
  cfg.weight_decay = 0;
  cfg.zo_eps = 1e-2;
  const std::vector<float> start = theta;
  std::vector<OptimTarget> targets{{&p, theta.data(), nullptr, n}};
  std::unique_ptr<ZoSgd> zo = ZoSgd::create(targets, targets, cfg, /*seed=*/11);
  const int K = 20000;
  std::vector<double> mean(n, 0.0);
  for (int k = 0; k < K; ++k) {
    zo->perturb(cfg.zo_eps);
    const double plus = loss(theta, a);
    zo->perturb(-2 * cfg.zo_eps);
    const double minus = loss(theta, a);
    zo->perturb(cfg.zo_eps);
    zo->set_projected_gradient((plus - minus) / (2 * cfg.zo_eps));
    const std::vector<float> before = theta;
    ASSERT_TRUE(zo->step(/*lr=*/1.0).ok());  // theta - g z
    for (int64_t i = 0; i < n; ++i) {
      mean[i] += (static_cast<double>(before[i]) - theta[i]) / K;
      theta[i] = start[i];  // every estimate at the same point
    }
  }
  EXPECT_EQ(zo->steps_taken(), K);
  // Var[(z.g) z_i] = |g|^2 + g_i^2 for z ~ N(0, I): the mean's standard error; 5 of them (and the fp32 rounding of
  // g z, ~1e-7 relative) bound each coordinate.
  for (int64_t i = 0; i < n; ++i) {
    const double se = std::sqrt((grad_sq + grad[i] * grad[i]) / K);
    EXPECT_NEAR(mean[i], grad[i], 5 * se) << "element " << i;
  }
  // And the estimate is not trivially zero or constant: it tracks the gradient's direction.
  double dot = 0, mean_sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    dot += mean[i] * grad[i];
    mean_sq += mean[i] * mean[i];
  }
  EXPECT_GT(dot / std::sqrt(mean_sq * grad_sq), 0.99);
}

TEST(ZoSgd, UpdateMatchesTheFormulaAndPerturbationsReturnTheValues) {
  model::Param w = make_param("h.0.w", {4, 8});
  model::Param b = make_param("h.0.b", {8}, model::ParamKind::kBias);
  std::vector<float> wv(32), bv(8);
  for (int i = 0; i < 32; ++i) wv[i] = std::sin(0.7f * static_cast<float>(i));
  for (int i = 0; i < 8; ++i) bv[i] = std::cos(0.3f * static_cast<float>(i));
  OptimConfig cfg;
  cfg.name = "zo_sgd";
  cfg.weight_decay = 0.1;  // matrices decay, biases do not (decay_norms_and_biases = false)
  const uint64_t seed = 5;
  std::vector<OptimTarget> targets{{&w, wv.data(), nullptr, 32}, {&b, bv.data(), nullptr, 8}};
  std::unique_ptr<ZoSgd> zo = ZoSgd::create(targets, targets, cfg, seed);
  const std::vector<float> w0 = wv, b0 = bv;
  zo->perturb(1e-3);
  zo->perturb(-2e-3);
  zo->perturb(1e-3);
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(wv[i], w0[i], 1e-6) << i;
  wv = w0;
  bv = b0;
  for (int step = 0; step < 3; ++step) {
    std::vector<float> zw(32), zb(8);
    ZoSgd::direction(w, seed, step, 0, 32, zw.data());
    ZoSgd::direction(b, seed, step, 0, 8, zb.data());
    const double g = 0.5 - step, lr = 0.01;
    std::vector<double> want_w(32), want_b(8);
    for (int i = 0; i < 32; ++i) want_w[i] = wv[i] - lr * (g * zw[i] + cfg.weight_decay * wv[i]);
    for (int i = 0; i < 8; ++i) want_b[i] = bv[i] - lr * g * zb[i];
    zo->set_projected_gradient(g);
    ASSERT_TRUE(zo->step(lr).ok());
    for (int i = 0; i < 32; ++i) EXPECT_NEAR(wv[i], want_w[i], 1e-6 * (1 + std::abs(want_w[i]))) << i;
    for (int i = 0; i < 8; ++i) EXPECT_NEAR(bv[i], want_b[i], 1e-6 * (1 + std::abs(want_b[i]))) << i;
    // Successive steps draw different directions.
    std::vector<float> next(32);
    ZoSgd::direction(w, seed, step + 1, 0, 32, next.data());
    EXPECT_NE(next, zw);
  }
}

TEST(ZoSgd, ATensorParallelPartDrawsItsSliceOfTheWholeDirection) {
  model::Param whole = make_param("attn.c_attn.weight", {4, 6});
  model::Param part = whole;
  part.local_shape = {4, 3};
  part.tp = model::TpSplit::along(1, {{1, 2}, {4, 6}});  // columns 1 and 4, 5: two runs per row
  std::vector<float> z_whole(24), z_part(12);
  ZoSgd::direction(whole, 9, 2, 0, 24, z_whole.data());
  ZoSgd::direction(part, 9, 2, 0, 12, z_part.data());
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(z_part[r * 3 + 0], z_whole[r * 6 + 1]);
    EXPECT_EQ(z_part[r * 3 + 1], z_whole[r * 6 + 4]);
    EXPECT_EQ(z_part[r * 3 + 2], z_whole[r * 6 + 5]);
  }
  // A piece starting mid-tensor (a ZeRO shard) draws the same elements.
  std::vector<float> tail(7);
  ZoSgd::direction(part, 9, 2, 5, 7, tail.data());
  for (int i = 0; i < 7; ++i) EXPECT_EQ(tail[i], z_part[5 + i]);
}

}  // namespace
}  // namespace memtrain::optim
