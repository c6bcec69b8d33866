// LoRA-GA's factors from a gradient of known singular vectors: G = U diag(s) V^T built from random orthonormal
// columns and distinct singular values, so A0 must hold the first r right singular vectors as rows and B0 singular
// vectors r..2r of the left as columns (each up to its sign), times out^(1/4) / sqrt(gamma); tall and wide shapes.
// A rank too large for the matrix is an error naming lora.r.
#include "trainer/lora_ga.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "tests/unit/trainer/low_rank_oracle.h"

namespace memtrain::trainer {
namespace {

using testing::orthonormal;

TEST(LoraGa, FactorsAreTheScaledSingularVectors) {
  for (const auto& [out, in] : {std::pair<int64_t, int64_t>{24, 16}, {12, 30}}) {
    SCOPED_TRACE(std::to_string(out) + "x" + std::to_string(in));
    const int64_t r = 3, k = std::min(out, in);
    const double gamma = 16;
    std::mt19937 rng(static_cast<unsigned>(out * 100 + in));
    const std::vector<double> U = orthonormal(out, k, rng), V = orthonormal(in, k, rng);
    std::vector<float> G(out * in);
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) {
        double v = 0;
        for (int64_t j = 0; j < k; ++j) v += U[o * k + j] * (10.0 / (1 + j)) * V[i * k + j];  // s_j = 10 / (1 + j)
        G[o * in + i] = static_cast<float>(v);
      }
    std::vector<float> A(r * in), B(out * r);
    ASSERT_TRUE(lora_ga_factors(G.data(), out, in, r, gamma, A.data(), B.data()).ok());
    const double c = std::pow(static_cast<double>(out), 0.25) / std::sqrt(gamma);
    for (int64_t j = 0; j < r; ++j) {
      double dot_a = 0, dot_b = 0;  // each vector's sign from its overlap with the expected one
      for (int64_t i = 0; i < in; ++i) dot_a += A[j * in + i] * V[i * k + j];
      for (int64_t o = 0; o < out; ++o) dot_b += B[o * r + j] * U[o * k + r + j];
      const double sign_a = dot_a >= 0 ? 1 : -1, sign_b = dot_b >= 0 ? 1 : -1;
      for (int64_t i = 0; i < in; ++i) EXPECT_NEAR(A[j * in + i], sign_a * c * V[i * k + j], 1e-5) << "A row " << j;
      for (int64_t o = 0; o < out; ++o) EXPECT_NEAR(B[o * r + j], sign_b * c * U[o * k + r + j], 1e-5) << "B col " << j;
    }
  }
  std::vector<float> G(8 * 6, 1.0f), A(4 * 6), B(8 * 4);
  const absl::Status too_big = lora_ga_factors(G.data(), 8, 6, 4, 16, A.data(), B.data());
  EXPECT_NE(too_big.message().find("lora.r: 4: LoRA-GA takes B from singular vectors r..2r"), std::string::npos)
      << too_big;
}

}  // namespace
}  // namespace memtrain::trainer
