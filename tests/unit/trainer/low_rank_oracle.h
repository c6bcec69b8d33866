// Float64 references for the low-rank initialisations' tests (LoRA-GA, QuAILoRA): random orthonormal columns, and
// QuAILoRA's objective and its optimum computed another way than its ALS solver: with S = H^(1/2) (symmetric, from
// LAPACK's eigensolver), f(P) = ||(E - P) S||_F^2 and the best rank-r P leaves f* = sum of the squared singular
// values of E S past the r-th (Eckart-Young on E S; P = LR_r(E S) S^+ reaches it, also for a singular H).
#pragma once

#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/status.h"

namespace memtrain::testing {

// n orthonormal columns of length m (column-major in a row-major (m, n) array), by Gram-Schmidt twice.
inline std::vector<double> orthonormal(int64_t m, int64_t n, std::mt19937& rng) {
  std::normal_distribution<double> d;
  std::vector<double> q(m * n);
  for (double& v : q) v = d(rng);
  for (int64_t j = 0; j < n; ++j) {
    for (int pass = 0; pass < 2; ++pass)
      for (int64_t k = 0; k < j; ++k) {
        double dot = 0;
        for (int64_t i = 0; i < m; ++i) dot += q[i * n + j] * q[i * n + k];
        for (int64_t i = 0; i < m; ++i) q[i * n + j] -= dot * q[i * n + k];
      }
    double norm = 0;
    for (int64_t i = 0; i < m; ++i) norm += q[i * n + j] * q[i * n + j];
    for (int64_t i = 0; i < m; ++i) q[i * n + j] /= std::sqrt(norm);
  }
  return q;
}

// H^p for a symmetric positive semi-definite H (n, n): p = 1/2 its square root, p = -1/2 the inverse root
// (eigenvalues below 1e-12 of the largest taken as zero, and left out of negative powers).
inline std::vector<double> symmetric_power(std::vector<double> H, int64_t n, double p) {
  std::vector<double> w(n), S(n * n, 0.0);
  MEMTRAIN_CHECK(LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', n, H.data(), n, w.data()) == 0);  // ascending
  for (int64_t e = 0; e < n; ++e) {
    if (w[e] <= 1e-12 * w[n - 1]) continue;
    const double root = std::pow(w[e], p);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) S[i * n + j] += root * H[i * n + e] * H[j * n + e];
  }
  return S;
}

// f(P) = tr((E - P) H (E - P)^T), E and P (out, in), H (in, in).
inline double calibrated_error(const std::vector<double>& E, const std::vector<double>& P, const std::vector<double>& H,
                               int64_t out, int64_t in) {
  double f = 0;
  std::vector<double> d(in);
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t i = 0; i < in; ++i) d[i] = E[o * in + i] - P[o * in + i];
    for (int64_t i = 0; i < in; ++i)
      for (int64_t j = 0; j < in; ++j) f += d[i] * H[i * in + j] * d[j];
  }
  return f;
}

// f* over every P of rank <= r.
inline double optimal_calibrated_error(const std::vector<double>& E, const std::vector<double>& H, int64_t out,
                                       int64_t in, int64_t r) {
  const std::vector<double> S = symmetric_power(H, in, 0.5);
  std::vector<double> es(out * in, 0.0);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t k = 0; k < in; ++k)
      for (int64_t j = 0; j < in; ++j) es[o * in + j] += E[o * in + k] * S[k * in + j];
  const int64_t k = std::min(out, in);
  std::vector<double> sv(k), superb(k);
  MEMTRAIN_CHECK(LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'N', 'N', out, in, es.data(), in, sv.data(), nullptr, 1, nullptr,
                                1, superb.data()) == 0);
  double f = 0;
  for (int64_t i = r; i < k; ++i) f += sv[i] * sv[i];
  return f;
}

}  // namespace memtrain::testing
