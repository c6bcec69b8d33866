// SMMF against a float64 re-implementation of the paper's algorithm, written the way the paper states it: each
// step decompresses both moments into full matrices (signs times the outer product of the |M| factors; the outer
// product of the V factors), updates them and the parameter, and compresses them again (signs, row sums and
// normalized column sums). Ten steps on tensors whose square views are square, oblong and a single column.
#include "optim/smmf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/memory.h"
#include "tests/unit/optim/float64_reference.h"

namespace memtrain::optim {
namespace {

struct Reference {  // one tensor, float64
  int64_t rows, cols;
  std::vector<double> p, m_row, m_col, v_row, v_col;
  std::vector<bool> positive;
};

// The matrix view by its definition: cols the largest divisor of n not above sqrt(n), found by trying them all.
std::pair<int64_t, int64_t> view_of(int64_t n) {
  int64_t cols = 1;
  for (int64_t d = 1; d * d <= n; ++d)
    if (n % d == 0) cols = d;
  return {n / cols, cols};
}

// Rank-1 non-negative factors of a (rows x cols): row sums, and column sums divided by the total.
void factor(const std::vector<double>& a, int64_t rows, int64_t cols, std::vector<double>& r, std::vector<double>& c) {
  r.assign(rows, 0);
  c.assign(cols, 0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      r[i] += a[i * cols + j];
      c[j] += a[i * cols + j];
    }
  double total = 0;
  for (double x : c) total += x;
  if (total > 0)
    for (double& x : c) x /= total;
}

void reference_step(Reference& r, const std::vector<double>& g, int t, double lr, const OptimConfig& c, bool decay) {
  const int64_t n = r.rows * r.cols;
  std::vector<double> m(n), v(n), abs_m(n);
  for (int64_t i = 0; i < r.rows; ++i)
    for (int64_t j = 0; j < r.cols; ++j) {
      const int64_t k = i * r.cols + j;
      m[k] = (r.positive[k] ? 1 : -1) * r.m_row[i] * r.m_col[j];
      v[k] = r.v_row[i] * r.v_col[j];
    }
  const double b1 = c.beta1 * std::pow(c.smmf_growth_rate, t - 1);
  const double b2 = 1 - std::pow(t, c.smmf_decay_rate);
  for (int64_t k = 0; k < n; ++k) {
    m[k] = b1 * m[k] + (1 - b1) * g[k];
    v[k] = b2 * v[k] + (1 - b2) * g[k] * g[k];
    r.p[k] -= (decay ? c.weight_decay * lr * r.p[k] : 0.0) + lr * m[k] / (std::sqrt(v[k]) + c.eps);
    r.positive[k] = m[k] > 0;
    abs_m[k] = std::fabs(m[k]);
  }
  factor(abs_m, r.rows, r.cols, r.m_row, r.m_col);
  factor(v, r.rows, r.cols, r.v_row, r.v_col);
}

TEST(Smmf, TheMatrixViewIsTheMostNearlySquareOne) {
  for (int64_t n : {1, 2, 7, 10, 16, 60, 97, 768, 3072, 50257 * 64, 1000003}) {
    EXPECT_EQ(Smmf::square_shape(n), view_of(n)) << n;
  }
}

TEST(Smmf, TenStepsMatchTheFloat64Algorithm) {
  for (const double growth : {0.999, 1.0}) {
    SCOPED_TRACE(::testing::Message() << "growth " << growth);
    OptimConfig c;
    c.name = "smmf";
    c.weight_decay = 0.1;
    c.smmf_growth_rate = growth;
    model::ParamSet ps;
    ps.add("w", {6, 10}, model::ParamKind::kWeight, {});   // 10 x 6
    ps.add("q", {4, 4}, model::ParamKind::kWeight, {});    // 4 x 4
    ps.add("b", {7}, model::ParamKind::kBias, {});          // 7 x 1: the factors are the moments themselves
    ASSERT_TRUE(ps.allocate().ok());
    std::mt19937 rng(11);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<Reference> refs;
    for (const auto& p : ps.all()) {
      const int64_t n = p->value.numel();
      Reference r;
      std::tie(r.rows, r.cols) = view_of(n);
      for (int64_t i = 0; i < n; ++i) r.p.push_back(p->value.f32()[i] = d(rng));
      r.m_row.assign(r.rows, 0);
      r.v_row.assign(r.rows, 0);
      r.m_col.assign(r.cols, 0);
      r.v_col.assign(r.cols, 0);
      r.positive.assign(n, false);
      refs.push_back(r);
    }
    auto opt = Smmf::create(whole_targets(ps), c);
    ASSERT_TRUE(opt.ok()) << opt.status();
    for (int t = 1; t <= 10; ++t) {
      for (size_t k = 0; k < refs.size(); ++k) {
        const auto& p = ps.all()[k];
        std::vector<double> g(p->grad.numel());
        // Gradients with a common direction, so that the first moment's signs persist and matter.
        for (size_t i = 0; i < g.size(); ++i) g[i] = p->grad.f32()[i] = d(rng) + (i % 2 ? 0.5f : -0.5f);
        reference_step(refs[k], g, t, 1e-2, c, /*decay=*/p->kind == model::ParamKind::kWeight);
      }
      ASSERT_TRUE((*opt)->step(1e-2).ok());
    }
    for (size_t k = 0; k < refs.size(); ++k) {
      const auto& p = ps.all()[k];
      EXPECT_LT(testing::relative_difference(p->value, refs[k].p), 1e-5) << p->name;
    }
  }
}

TEST(Smmf, StateIsTwoPairsOfFactorsAndOneBitPerElement) {
  model::ParamSet ps;
  ps.add("w", {300, 200}, model::ParamKind::kWeight, {});  // 60000 = 250 x 240
  ps.add("b", {200}, model::ParamKind::kBias, {});         // 200 = 20 x 10
  ASSERT_TRUE(ps.allocate().ok());
  OptimConfig c;
  c.name = "smmf";
  MemoryTracker& mt = MemoryTracker::host();
  const int64_t before = mt.current(MemCategory::kOptimizerState);
  const std::vector<OptimTarget> targets = whole_targets(ps);
  auto opt = create_optimizer(targets, c);
  ASSERT_TRUE(opt.ok());
  const int64_t expected = 2 * 4 * (250 + 240) + 60000 / 8 + 2 * 4 * (20 + 10) + 200 / 8;
  EXPECT_EQ(mt.current(MemCategory::kOptimizerState) - before, expected);
  EXPECT_EQ(optimizer_state_bytes(targets[0], c) + optimizer_state_bytes(targets[1], c), expected);
  // A piece of a tensor (a ZeRO shard) is refused: the factors need all of it.
  std::vector<OptimTarget> piece = {{targets[0].param, targets[0].value, targets[0].grad, 256, 0}};
  auto refused = create_optimizer(piece, c);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("a piece of w"), std::string::npos) << refused.status();
}

}  // namespace
}  // namespace memtrain::optim
