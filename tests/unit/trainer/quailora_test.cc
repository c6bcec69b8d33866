// QuAILoRA's factors against Eckart-Young on E H^(1/2) (tests/unit/trainer/low_rank_oracle.h: LAPACK's eigensolver
// and dgesvd, not the solver's SVD start and ALS):
// - an error built with a gap in the singular values of E S: the ALS result reaches f* (1e-6 relative) and its
//   product is the unique optimum LR_r(E S) S^-1 (1e-5), while the SVD start is measurably worse (so the test
//   would see a solver that ignored H);
// - f never increases over the iterations and the float factors' f is the one returned; the factors end balanced
//   (A A^T = B^T B), as the SVD start is;
// - H = I: the SVD start is already optimal and the iterations keep it;
// - a singular H (fewer calibration tokens than inputs): still f*;
// - a rank above min(out, in) names lora.r.
#include "trainer/quailora.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "tests/unit/trainer/low_rank_oracle.h"

namespace memtrain::trainer {
namespace {

using Matrix = std::vector<double>;

// H = X X^T for X (in, N) normal, feature i scaled by 0.3 + 0.2 i (anisotropic, like real activations).
Matrix gram(int64_t in, int64_t N, std::mt19937& rng) {
  std::normal_distribution<double> d;
  Matrix X(in * N), H(in * in, 0.0);
  for (int64_t i = 0; i < in; ++i)
    for (int64_t n = 0; n < N; ++n) X[i * N + n] = (0.3 + 0.2 * static_cast<double>(i)) * d(rng);
  for (int64_t i = 0; i < in; ++i)
    for (int64_t j = 0; j < in; ++j)
      for (int64_t n = 0; n < N; ++n) H[i * in + j] += X[i * N + n] * X[j * N + n];
  return H;
}

Matrix matmul(const Matrix& a, const Matrix& b, int64_t m, int64_t k, int64_t n) {
  Matrix c(m * n, 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t l = 0; l < k; ++l)
      for (int64_t j = 0; j < n; ++j) c[i * n + j] += a[i * k + l] * b[l * n + j];
  return c;
}

// s B A (out, in) from the float factors.
Matrix product(const std::vector<float>& A, const std::vector<float>& B, int64_t out, int64_t in, int64_t r, double s) {
  Matrix p(out * in, 0.0);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t k = 0; k < r; ++k)
      for (int64_t i = 0; i < in; ++i) p[o * in + i] += s * B[o * r + k] * A[k * in + i];
  return p;
}

double relative_distance(const Matrix& x, const Matrix& y) {
  double d = 0, n = 0;
  for (size_t i = 0; i < x.size(); ++i) d += (x[i] - y[i]) * (x[i] - y[i]), n += y[i] * y[i];
  return std::sqrt(d / n);
}

struct Solved {
  std::vector<float> A, B;
  std::vector<double> trace;
  QuantizationError err;
};

Solved solve(const Matrix& E, const Matrix& H, int64_t out, int64_t in, int64_t r, double s, int64_t iters) {
  Solved x{std::vector<float>(r * in), std::vector<float>(out * r), {}, {}};
  auto err = quailora_factors(E.data(), H.data(), out, in, r, s, iters, x.A.data(), x.B.data(), &x.trace);
  MEMTRAIN_CHECK_OK(err.status());
  x.err = *err;
  return x;
}

// (Within the rounding of f's expansion, which subtracts terms as large as f with B = 0.)
void expect_non_increasing(const std::vector<double>& trace, double f_zero) {
  for (size_t i = 1; i < trace.size(); ++i) EXPECT_LE(trace[i], trace[i - 1] + 1e-12 * f_zero) << "iteration " << i;
}

TEST(Quailora, AlternatingLeastSquaresReachTheCalibratedOptimum) {
  const int64_t out = 24, in = 16, r = 3;
  const double s = 2.0;
  std::mt19937 rng(7);
  const Matrix H = gram(in, 64, rng);
  // E = M S^-1 with M = U diag(sigma) V^T: E S = M, whose top r singular values stand apart.
  const Matrix U = testing::orthonormal(out, in, rng), V = testing::orthonormal(in, in, rng);
  Matrix M(out * in, 0.0), Mr(out * in, 0.0);
  for (int64_t k = 0; k < in; ++k) {
    const double sigma = k < r ? 8.0 - 2.0 * static_cast<double>(k) : 0.5 / static_cast<double>(k);
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) {
        M[o * in + i] += sigma * U[o * in + k] * V[i * in + k];
        if (k < r) Mr[o * in + i] += sigma * U[o * in + k] * V[i * in + k];
      }
  }
  const Matrix S_inv = testing::symmetric_power(H, in, -0.5);
  const Matrix E = matmul(M, S_inv, out, in, in), best = matmul(Mr, S_inv, out, in, in);
  const double f_star = testing::optimal_calibrated_error(E, H, out, in, r);

  const Solved x = solve(E, H, out, in, r, s, 200);
  ASSERT_EQ(x.trace.size(), 201u);
  EXPECT_GT(x.trace.front(), 1.05 * f_star) << "the SVD start should miss the calibrated optimum";
  expect_non_increasing(x.trace, x.err.qlora);
  EXPECT_LE(x.err.quailora, f_star * (1 + 1e-6));
  // The float factors' own error (their rounding moves f off the optimum at first order).
  const Matrix P = product(x.A, x.B, out, in, r, s);
  const double f = testing::calibrated_error(E, P, H, out, in);
  EXPECT_LE(f, f_star * (1 + 1e-4));
  EXPECT_NEAR(x.err.quailora, f, 1e-4 * f);
  EXPECT_NEAR(x.err.qlora, testing::calibrated_error(E, Matrix(out * in, 0.0), H, out, in), 1e-9 * x.err.qlora);
  EXPECT_LT(relative_distance(P, best), 1e-5);
  // Balanced: A A^T = B^T B.
  for (int64_t a = 0; a < r; ++a)
    for (int64_t b = 0; b < r; ++b) {
      double aat = 0, btb = 0;
      for (int64_t i = 0; i < in; ++i) aat += static_cast<double>(x.A[a * in + i]) * x.A[b * in + i];
      for (int64_t o = 0; o < out; ++o) btb += static_cast<double>(x.B[o * r + a]) * x.B[o * r + b];
      EXPECT_NEAR(aat, btb, 1e-5 * (std::fabs(aat) + 1e-3)) << a << ", " << b;
    }
}

TEST(Quailora, WithIdentityWeightsTheSvdStartIsOptimal) {
  const int64_t out = 12, in = 20, r = 4;
  std::mt19937 rng(3);
  std::normal_distribution<double> d;
  Matrix E(out * in), H(in * in, 0.0);
  for (double& e : E) e = d(rng);
  for (int64_t i = 0; i < in; ++i) H[i * in + i] = 1.0;
  const double f_star = testing::optimal_calibrated_error(E, H, out, in, r);
  const Solved x = solve(E, H, out, in, r, 0.5, 10);
  for (double f : x.trace) EXPECT_NEAR(f, f_star, 1e-9 * f_star);
  const Solved start = solve(E, H, out, in, r, 0.5, 0);
  EXPECT_LT(relative_distance(product(x.A, x.B, out, in, r, 0.5), product(start.A, start.B, out, in, r, 0.5)), 1e-6);
}

TEST(Quailora, SingularWeightsStillReachTheOptimum) {
  const int64_t out = 10, in = 16, r = 2;
  std::mt19937 rng(11);
  std::normal_distribution<double> d;
  Matrix E(out * in);
  for (double& e : E) e = d(rng);
  const Matrix H = gram(in, 8, rng);  // rank 8
  const double f_star = testing::optimal_calibrated_error(E, H, out, in, r);
  const Solved x = solve(E, H, out, in, r, 1.0, 200);
  expect_non_increasing(x.trace, x.err.qlora);
  EXPECT_GT(x.trace.front(), 1.05 * f_star);
  EXPECT_LE(x.err.quailora, f_star * (1 + 1e-6));
  EXPECT_LE(testing::calibrated_error(E, product(x.A, x.B, out, in, r, 1.0), H, out, in), f_star * (1 + 1e-4));
}

TEST(Quailora, RankAboveTheMatrixNamesLoraR) {
  Matrix E(6 * 4, 1.0), H(4 * 4, 0.0);
  std::vector<float> A(5 * 4), B(6 * 5);
  auto err = quailora_factors(E.data(), H.data(), 6, 4, 5, 1.0, 1, A.data(), B.data());
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.status().message().find("lora.r"), std::string::npos) << err.status();
}

}  // namespace
}  // namespace memtrain::trainer
