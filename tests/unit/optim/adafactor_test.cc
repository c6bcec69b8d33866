// Adafactor against a float64 re-implementation of Hugging Face's Adafactor update (written out below from its
// formulas: factored row/column second moments, decay 1 - t^rate, RMS clipping, optional momentum, parameter
// scale and relative step size, decoupled weight decay): ten steps on a matrix and a vector within 1e-5 relative, with clipping active.
#include "optim/adafactor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/memory.h"
#include "tests/unit/optim/float64_reference.h"

namespace memtrain::optim {
namespace {

struct Reference {  // one tensor, float64
  int64_t rows, cols;  // rows == 0: not factored
  std::vector<double> p, row, col, v, m;
};

double rms(const std::vector<double>& x) {
  double s = 0;
  for (double e : x) s += e * e;
  return std::sqrt(s / x.size());
}

void reference_step(Reference& r, const std::vector<double>& g, int t, double lr, const OptimConfig& c, bool decay) {
  const size_t n = g.size();
  if (c.adafactor_relative_step) lr = std::min(1e-2, 1 / std::sqrt(t));
  if (c.adafactor_scale_parameter) lr *= std::max(1e-3, rms(r.p));
  const double b2 = 1 - std::pow(t, c.adafactor_decay_rate);
  std::vector<double> u(n);
  if (r.rows > 0) {
    for (int64_t i = 0; i < r.rows; ++i) {
      double mean = 0;
      for (int64_t j = 0; j < r.cols; ++j) mean += (g[i * r.cols + j] * g[i * r.cols + j] + 1e-30) / r.cols;
      r.row[i] = b2 * r.row[i] + (1 - b2) * mean;
    }
    for (int64_t j = 0; j < r.cols; ++j) {
      double mean = 0;
      for (int64_t i = 0; i < r.rows; ++i) mean += (g[i * r.cols + j] * g[i * r.cols + j] + 1e-30) / r.rows;
      r.col[j] = b2 * r.col[j] + (1 - b2) * mean;
    }
    double row_mean = 0;
    for (double x : r.row) row_mean += x / r.rows;
    for (int64_t i = 0; i < r.rows; ++i)
      for (int64_t j = 0; j < r.cols; ++j)
        u[i * r.cols + j] = g[i * r.cols + j] / std::sqrt(r.row[i] / row_mean) / std::sqrt(r.col[j]);
  } else {
    for (size_t i = 0; i < n; ++i) {
      r.v[i] = b2 * r.v[i] + (1 - b2) * (g[i] * g[i] + 1e-30);
      u[i] = g[i] / std::sqrt(r.v[i]);
    }
  }
  const double clip = std::max(1.0, rms(u) / c.adafactor_clip);
  for (double& x : u) x = x / clip * lr;
  if (c.adafactor_momentum) {
    for (size_t i = 0; i < n; ++i) u[i] = r.m[i] = c.beta1 * r.m[i] + (1 - c.beta1) * u[i];
  }
  for (size_t i = 0; i < n; ++i) r.p[i] += (decay ? -c.weight_decay * lr * r.p[i] : 0.0) - u[i];
}

TEST(Adafactor, TenStepsMatchTheFloat64Formulas) {
  for (int variant = 0; variant < 5; ++variant) {
    {  // momentum and parameter scale off and on; the last with the relative step size.
      const bool momentum = variant % 2 == 1, scale = variant / 2 % 2 == 1, relative = variant == 4;
      SCOPED_TRACE(::testing::Message() << "momentum " << momentum << " scale " << scale << " relative " << relative);
      OptimConfig c;
      c.name = "adafactor";
      c.weight_decay = 0.1;
      c.adafactor_clip = 0.5;  // the first update has RMS 1: clipping is active
      c.adafactor_momentum = momentum;
      c.adafactor_scale_parameter = scale;
      c.adafactor_relative_step = relative;
      model::ParamSet ps;
      ps.add("w", {6, 10}, model::ParamKind::kWeight, {});
      ps.add("b", {10}, model::ParamKind::kBias, {});
      ASSERT_TRUE(ps.allocate().ok());
      std::mt19937 rng(7);
      std::normal_distribution<float> d(0.0f, 1.0f);
      std::vector<Reference> refs;
      for (const auto& p : ps.all()) {
        const int64_t n = p->value.numel();
        Reference r{p->local_shape.size() == 2 ? p->local_shape[0] : 0,
                    p->local_shape.size() == 2 ? p->local_shape[1] : 0, {}, {}, {}, {}, {}};
        for (int64_t i = 0; i < n; ++i) r.p.push_back(p->value.f32()[i] = d(rng));
        r.row.assign(r.rows, 0);
        r.col.assign(r.cols, 0);
        r.v.assign(n, 0);
        r.m.assign(n, 0);
        refs.push_back(r);
      }
      auto opt = Adafactor::create(whole_targets(ps), c);
      ASSERT_TRUE(opt.ok()) << opt.status();
      for (int t = 1; t <= 10; ++t) {
        for (size_t k = 0; k < refs.size(); ++k) {
          const auto& p = ps.all()[k];
          std::vector<double> g(p->grad.numel());
          for (size_t i = 0; i < g.size(); ++i) g[i] = p->grad.f32()[i] = d(rng) * (1 + (i % 3));
          reference_step(refs[k], g, t, 1e-2, c, /*decay=*/k == 0);  // biases are not decayed by default
        }
        ASSERT_TRUE((*opt)->step(1e-2).ok());
      }
      for (size_t k = 0; k < refs.size(); ++k) {
        const auto& p = ps.all()[k];
        EXPECT_LT(testing::relative_difference(p->value, refs[k].p), 1e-5) << p->name;
      }
    }
  }
}

TEST(Adafactor, StateIsRowsPlusColumnsOfAMatrix) {
  model::ParamSet ps;
  ps.add("w", {300, 200}, model::ParamKind::kWeight, {});
  ps.add("b", {200}, model::ParamKind::kBias, {});
  ASSERT_TRUE(ps.allocate().ok());
  OptimConfig c;
  c.name = "adafactor";
  MemoryTracker& mt = MemoryTracker::host();
  const int64_t before = mt.current(MemCategory::kOptimizerState);
  const std::vector<OptimTarget> targets = whole_targets(ps);
  auto opt = create_optimizer(targets, c);
  ASSERT_TRUE(opt.ok());
  EXPECT_EQ(mt.current(MemCategory::kOptimizerState) - before, 4 * (300 + 200 + 200));
  EXPECT_EQ(optimizer_state_bytes(targets[0], c) + optimizer_state_bytes(targets[1], c), 4 * (300 + 200 + 200));
  // A piece of a matrix (a ZeRO shard) is refused: the factors need the whole matrix.
  std::vector<OptimTarget> piece = {{targets[0].param, targets[0].value, targets[0].grad, 256, 0}};
  auto refused = create_optimizer(piece, c);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("a piece of w"), std::string::npos) << refused.status();
}

}  // namespace
}  // namespace memtrain::optim
