// COAP against a float64 re-implementation of the reference's algorithm written another way: every matrix is
// handled as X = G (tall or square) or G^T (wide) explicitly; RandSVD through LAPACK's double QR and SVD; and the
// projection's SGD step takes dl/dP from central finite differences of l(P) written with loops, not from the
// closed form the optimizer uses (itself checked against the same finite differences first).
#include "optim/coap.h"

#include <gtest/gtest.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/memory.h"
#include "core/philox.h"
#include "tests/unit/optim/float64_reference.h"

namespace memtrain::optim {
namespace {

using Mat = std::vector<double>;  // row-major

// l(P) = mean((X P^T P - X)^2) * (1 - mean_c cos((M P)_c, X_c)), X: L x s, P: r x s, M: L x r.
double loss64(const Mat& X, const Mat& P, const Mat& M, int64_t L, int64_t s, int64_t r) {
  double mse = 0, cos_sum = 0;
  for (int64_t c = 0; c < L; ++c) {
    std::vector<double> t(r, 0.0), a(s, 0.0);
    for (int64_t k = 0; k < r; ++k)
      for (int64_t j = 0; j < s; ++j) t[k] += X[c * s + j] * P[k * s + j];
    double dot = 0, aa = 0, xx = 0;
    for (int64_t j = 0; j < s; ++j) {
      double rec = 0;
      for (int64_t k = 0; k < r; ++k) {
        rec += t[k] * P[k * s + j];
        a[j] += M[c * r + k] * P[k * s + j];
      }
      mse += (rec - X[c * s + j]) * (rec - X[c * s + j]);
      dot += a[j] * X[c * s + j];
      aa += a[j] * a[j];
      xx += X[c * s + j] * X[c * s + j];
    }
    cos_sum += aa > 0 && xx > 0 ? dot / std::sqrt(aa * xx) : 0.0;
  }
  return mse / static_cast<double>(L * s) * (1 - cos_sum / static_cast<double>(L));
}

Mat fd_gradient(const Mat& X, Mat P, const Mat& M, int64_t L, int64_t s, int64_t r) {
  Mat g(r * s);
  const double h = 1e-6;
  for (int64_t i = 0; i < r * s; ++i) {
    const double p = P[i];
    P[i] = p + h;
    const double up = loss64(X, P, M, L, s, r);
    P[i] = p - h;
    const double down = loss64(X, P, M, L, s, r);
    P[i] = p;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

std::vector<float> to_float(const Mat& a) { return std::vector<float>(a.begin(), a.end()); }

TEST(Coap, ProjectionLossGradientMatchesFiniteDifferences) {
  const int64_t L = 9, s = 6, r = 3;
  std::mt19937 rng(5);
  std::normal_distribution<double> d(0.0, 1.0);
  Mat X(L * s), P(r * s), M(L * r);
  for (double& v : X) v = d(rng);
  for (double& v : P) v = 0.5 * d(rng);
  for (double& v : M) v = d(rng);
  // Float inputs, so both sides see the same numbers.
  const std::vector<float> xf = to_float(X), pf = to_float(P), mf = to_float(M);
  X.assign(xf.begin(), xf.end());
  P.assign(pf.begin(), pf.end());
  M.assign(mf.begin(), mf.end());
  std::vector<double> grad;
  const double l = coap_projection_loss(xf.data(), pf.data(), mf.data(), L, s, r, &grad);
  EXPECT_NEAR(l, loss64(X, P, M, L, s, r), 1e-5 * std::abs(l));
  const Mat want = fd_gradient(X, P, M, L, s, r);
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < r * s; ++i) {
    diff += (grad[i] - want[i]) * (grad[i] - want[i]);
    norm += want[i] * want[i];
  }
  EXPECT_LT(std::sqrt(diff / norm), 1e-4);
}

// One matrix of the reference, in float64.
struct Ref {
  int64_t m, n, r;
  bool wide;  // m < n: X = G^T
  Mat w, P, M, V;  // M, V: L x r (X P^T's layout)
  int64_t L() const { return wide ? n : m; }
  int64_t s() const { return wide ? m : n; }
};

Mat oriented(const Ref& f, const Mat& G) {
  if (!f.wide) return G;
  Mat X(f.m * f.n);
  for (int64_t i = 0; i < f.m; ++i)
    for (int64_t j = 0; j < f.n; ++j) X[j * f.m + i] = G[i * f.n + j];
  return X;
}

// Top r right singular vectors of Q^T X, Q from the QR of X Omega (Omega: s x r).
Mat rand_svd64(const Mat& X, const Mat& omega, int64_t L, int64_t s, int64_t r) {
  Mat Y(L * r, 0.0), tau(r), B(r * s, 0.0), sv(r), u(r * r), vt(r * s);
  for (int64_t c = 0; c < L; ++c)
    for (int64_t k = 0; k < r; ++k)
      for (int64_t j = 0; j < s; ++j) Y[c * r + k] += X[c * s + j] * omega[j * r + k];
  EXPECT_EQ(LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, L, r, Y.data(), r, tau.data()), 0);
  EXPECT_EQ(LAPACKE_dorgqr(LAPACK_ROW_MAJOR, L, r, r, Y.data(), r, tau.data()), 0);
  for (int64_t k = 0; k < r; ++k)
    for (int64_t j = 0; j < s; ++j)
      for (int64_t c = 0; c < L; ++c) B[k * s + j] += Y[c * r + k] * X[c * s + j];
  Mat superb(r);
  EXPECT_EQ(LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'S', 'S', r, s, B.data(), s, sv.data(), u.data(), r, vt.data(), s,
                           superb.data()),
            0);
  return vt;
}

void ref_step(Ref& f, const Mat& G, int64_t k, int64_t t, double lr, const OptimConfig& c) {
  const int64_t L = f.L(), s = f.s(), r = f.r;
  const Mat X = oriented(f, G);
  const int64_t T_u = c.coap_update_interval;
  if (k == 0 || k % T_u == 0) {
    if (k == 0 || k % (T_u * c.coap_reproject_factor) == 0) {
      Mat omega(s * r);
      if (k == 0) {
        std::vector<float> z(s * r);
        philox_normal(philox_key(3407, "coap.omega"), 0, s * r, 0.0f, 1.0f, z.data());
        omega.assign(z.begin(), z.end());
      } else {
        for (int64_t i = 0; i < r; ++i)
          for (int64_t j = 0; j < s; ++j) omega[j * r + i] = f.P[i * s + j];
      }
      Mat fresh = rand_svd64(X, omega, L, s, r);
      for (int64_t i = 0; i < r; ++i) {
        double sign = 0;
        if (k == 0) {
          for (int64_t j = 0; j < s; ++j)
            if (std::abs(fresh[i * s + j]) > std::abs(sign)) sign = fresh[i * s + j];
        } else {
          for (int64_t j = 0; j < s; ++j) sign += fresh[i * s + j] * f.P[i * s + j];
        }
        if (sign < 0)
          for (int64_t j = 0; j < s; ++j) fresh[i * s + j] = -fresh[i * s + j];
      }
      f.P = fresh;
    } else {
      Mat g = fd_gradient(X, f.P, f.M, L, s, r);
      double norm = 0;
      for (double v : g) norm += v * v;
      norm = std::sqrt(norm);
      const double clip = norm > 1 ? 1 / (norm + 1e-6) : 1.0;
      for (int64_t i = 0; i < r * s; ++i) f.P[i] -= 0.1 * clip * g[i];
    }
  }
  // Adam on R = X P^T (L x r), back-projected: dX = N P, W -= step * scale * (dX or dX^T).
  const double step = lr * std::sqrt(1 - std::pow(c.beta2, t)) / (1 - std::pow(c.beta1, t));
  Mat dX(L * s, 0.0);
  for (int64_t cc = 0; cc < L; ++cc) {
    for (int64_t i = 0; i < r; ++i) {
      double R = 0;
      for (int64_t j = 0; j < s; ++j) R += X[cc * s + j] * f.P[i * s + j];
      double& M = f.M[cc * r + i];
      double& V = f.V[cc * r + i];
      M = c.beta1 * M + (1 - c.beta1) * R;
      V = c.beta2 * V + (1 - c.beta2) * R * R;
      const double N = M / (std::sqrt(V) + c.eps);
      for (int64_t j = 0; j < s; ++j) dX[cc * s + j] += N * f.P[i * s + j];
    }
  }
  for (int64_t i = 0; i < f.m; ++i)
    for (int64_t j = 0; j < f.n; ++j) {
      double& w = f.w[i * f.n + j];
      w -= step * c.coap_scale * (f.wide ? dX[j * f.m + i] : dX[i * f.n + j]);
      w *= 1 - lr * c.weight_decay;
    }
}

TEST(Coap, StepsMatchTheFloat64Reimplementation) {
  OptimConfig c;
  c.name = "coap_adamw";
  c.rank = 3;
  c.coap_update_interval = 2;   // the projection moves at steps 2, 6, 10 and is recomputed at 0, 4, 8
  c.coap_reproject_factor = 2;
  c.coap_scale = 0.5;
  c.weight_decay = 0.1;
  c.beta2 = 0.999;
  model::ParamSet ps;
  ps.add("tall", {10, 6}, model::ParamKind::kWeight, {});
  ps.add("wide", {5, 9}, model::ParamKind::kWeight, {});
  ps.add("square", {7, 7}, model::ParamKind::kWeight, {});
  ps.add("norm", {7}, model::ParamKind::kNorm, {});  // plain AdamW
  ASSERT_TRUE(ps.allocate().ok());
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<Ref> refs;
  for (int k = 0; k < 3; ++k) {
    const auto& p = ps.all()[k];
    Ref f{p->local_shape[0], p->local_shape[1], 3, p->local_shape[0] < p->local_shape[1], {}, {}, {}, {}};
    for (int64_t i = 0; i < p->value.numel(); ++i) f.w.push_back(p->value.f32()[i] = d(rng));
    f.M.assign(f.L() * f.r, 0.0);
    f.V = f.M;
    refs.push_back(f);
  }
  auto opt = create_optimizer(whole_targets(ps), c);
  ASSERT_TRUE(opt.ok()) << opt.status();
  // Gradients drifting slowly, so that successive projections are related as in training.
  std::vector<std::vector<float>> base;
  for (const auto& p : ps.all()) {
    base.emplace_back(p->grad.numel());
    for (float& g : base.back()) g = d(rng);
  }
  for (int64_t t = 1; t <= 11; ++t) {
    for (size_t k = 0; k < ps.all().size(); ++k) {
      const auto& p = ps.all()[k];
      for (int64_t i = 0; i < p->grad.numel(); ++i) p->grad.f32()[i] = base[k][i] + 0.3f * d(rng);
    }
    for (int k = 0; k < 3; ++k) {
      const auto& p = ps.all()[k];
      ref_step(refs[k], Mat(p->grad.f32(), p->grad.f32() + p->grad.numel()), t - 1, t, 1e-2, c);
    }
    ASSERT_TRUE((*opt)->step(1e-2).ok());
  }
  auto* coap = dynamic_cast<Coap*>(opt->get());
  ASSERT_NE(coap, nullptr);
  for (int k = 0; k < 3; ++k) {
    const auto& p = ps.all()[k];
    EXPECT_LT(testing::relative_difference(p->value, refs[k].w), 1e-5) << p->name;
    const std::vector<float> P = coap->projection(k);
    double diff = 0, norm = 0;
    for (size_t i = 0; i < P.size(); ++i) {
      diff += std::pow(P[i] - refs[k].P[i], 2);
      norm += refs[k].P[i] * refs[k].P[i];
    }
    EXPECT_LT(std::sqrt(diff / norm), 1e-4) << p->name << " projection";
  }
}

TEST(Coap, StateIsTheProjectionAndTwoProjectedMoments) {
  model::ParamSet ps;
  ps.add("w", {300, 200}, model::ParamKind::kWeight, {});
  ps.add("b", {200}, model::ParamKind::kBias, {});
  ASSERT_TRUE(ps.allocate().ok());
  OptimConfig c;
  c.name = "coap_adamw";
  c.rank = 16;
  MemoryTracker& mt = MemoryTracker::host();
  const int64_t before = mt.current(MemCategory::kOptimizerState);
  auto opt = create_optimizer(whole_targets(ps), c);
  ASSERT_TRUE(opt.ok());
  const int64_t want = 4 * (16 * 200 + 2 * 16 * 300) + 8 * 200;
  EXPECT_EQ(mt.current(MemCategory::kOptimizerState) - before, want);
  int64_t planned = 0;
  for (const OptimTarget& t : whole_targets(ps)) planned += optimizer_state_bytes(t, c);
  EXPECT_EQ(planned, want);
}

}  // namespace
}  // namespace memtrain::optim
