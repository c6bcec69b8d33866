// LoRA kernels against float64: the forward against a float64 product; every gradient (A, B and x) against
// central finite differences of a float64 forward of L = sum(G * y); LoRA-FA (A frozen) leaves dA alone and gives
// the same dB; merging into the weight in both layouts gives the base output plus the adapter's.
#include "model/lora.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/cpu/gemm.h"

namespace memtrain::model {
namespace {

constexpr int64_t N = 5, in = 12, out = 9, r = 3;
constexpr float kScale = 16.0f / r;  // alpha = 16

struct Data {
  std::vector<float> A, B, x, G;
  Data() : A(r * in), B(out * r), x(N * in), G(N * out) {
    std::mt19937 rng(9);
    std::normal_distribution<float> d(0.0f, 0.5f);
    for (auto* v : {&A, &B, &x, &G})
      for (float& e : *v) e = d(rng);
  }
};

// The adapter's output in float64: scale * (x A^T) B^T, (N, out).
std::vector<double> forward64(const std::vector<double>& A, const std::vector<double>& B, const std::vector<double>& x) {
  std::vector<double> y(N * out, 0.0);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t k = 0; k < r; ++k) {
      double h = 0;
      for (int64_t c = 0; c < in; ++c) h += x[i * in + c] * A[k * in + c];
      for (int64_t o = 0; o < out; ++o) y[i * out + o] += kScale * h * B[o * r + k];
    }
  return y;
}

std::vector<double> wide(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

double loss64(const Data& d, const std::vector<double>& A, const std::vector<double>& B, const std::vector<double>& x) {
  const std::vector<double> y = forward64(A, B, x);
  double L = 0;
  for (int64_t i = 0; i < N * out; ++i) L += d.G[i] * y[i];
  return L;
}

TEST(Lora, ForwardAndGradientsMatchFloat64AndFiniteDifferences) {
  Data d;
  std::vector<float> dA(r * in, 0.0f), dB(out * r, 0.0f), h(N * r), dh(N * r), y(N * out, 0.0f), dx(N * in, 0.0f);
  const LoraAdapter a{in, out, r, kScale, d.A.data(), d.B.data(), dA.data(), dB.data()};
  lora_forward(a, d.x.data(), N, h.data(), y.data(), ThreadPool::global());
  const std::vector<double> y64 = forward64(wide(d.A), wide(d.B), wide(d.x));
  for (int64_t i = 0; i < N * out; ++i) EXPECT_NEAR(y[i], y64[i], 1e-5 * (1 + std::fabs(y64[i])));
  lora_backward(a, d.x.data(), h.data(), d.G.data(), N, dh.data(), dx.data(), ThreadPool::global());

  // Central differences of the float64 loss, for every element of A, B and x.
  auto check = [&](std::vector<float>& param, const std::vector<float>& grad, const char* what) {
    for (size_t j = 0; j < param.size(); ++j) {
      const double eps = 1e-4;
      std::vector<double> A = wide(d.A), B = wide(d.B), x = wide(d.x);
      std::vector<double>& p = &param == &d.A ? A : &param == &d.B ? B : x;
      p[j] += eps;
      const double up = loss64(d, A, B, x);
      p[j] -= 2 * eps;
      const double down = loss64(d, A, B, x);
      const double fd = (up - down) / (2 * eps);
      ASSERT_NEAR(grad[j], fd, 1e-4 * (1 + std::fabs(fd))) << what << "[" << j << "]";
    }
  };
  check(d.A, dA, "dA");
  check(d.B, dB, "dB");
  check(d.x, dx, "dx");

  // LoRA-FA: A frozen, the same dB.
  std::vector<float> dB_fa(out * r, 0.0f);
  const LoraAdapter fa{in, out, r, kScale, d.A.data(), d.B.data(), nullptr, dB_fa.data()};
  lora_backward(fa, d.x.data(), h.data(), d.G.data(), N, dh.data(), nullptr, ThreadPool::global());
  EXPECT_EQ(dB_fa, dB);
}

TEST(Lora, MergedWeightsGiveTheBaseOutputPlusTheAdapters) {
  Data d;
  std::mt19937 rng(4);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::vector<float> W(out * in);  // nn.Linear (out, in)
  for (float& w : W) w = n01(rng);
  std::vector<float> h(N * r), y(N * out);
  const LoraAdapter a{in, out, r, kScale, d.A.data(), d.B.data(), nullptr, nullptr};
  // base + adapter
  cpu::sgemm(false, true, N, out, in, 1.0f, d.x.data(), in, W.data(), in, 0.0f, y.data(), out, ThreadPool::global());
  lora_forward(a, d.x.data(), N, h.data(), y.data(), ThreadPool::global());
  // merged, (out, in)
  std::vector<float> merged = W, y_merged(N * out);
  lora_merge(a, /*in_out=*/false, merged.data(), ThreadPool::global());
  cpu::sgemm(false, true, N, out, in, 1.0f, d.x.data(), in, merged.data(), in, 0.0f, y_merged.data(), out,
             ThreadPool::global());
  // merged, Conv1D (in, out)
  std::vector<float> Wt(in * out), y_conv(N * out);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t c = 0; c < in; ++c) Wt[c * out + o] = W[o * in + c];
  lora_merge(a, /*in_out=*/true, Wt.data(), ThreadPool::global());
  cpu::sgemm(false, false, N, out, in, 1.0f, d.x.data(), in, Wt.data(), out, 0.0f, y_conv.data(), out,
             ThreadPool::global());
  for (int64_t i = 0; i < N * out; ++i) {
    EXPECT_NEAR(y_merged[i], y[i], 1e-5 * (1 + std::fabs(y[i])));
    EXPECT_NEAR(y_conv[i], y[i], 1e-5 * (1 + std::fabs(y[i])));
  }
}

}  // namespace
}  // namespace memtrain::model
