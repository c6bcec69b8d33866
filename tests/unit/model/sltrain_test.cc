// SLTrain against the dense model computed another way. The support: ascending distinct positions whose count and
// spread over the tensor fit independent draws of density delta (binomial, 5 standard deviations), the same for the
// same name and different for another. The model: a tiny GPT-2 / LLaMA with every projection as (alpha/r) B A + S
// (B drawn at random, as after training) has the loss of the plain model holding the merged weights, and its factors'
// gradients are what the chain rule makes of the merged model's weight gradient dW (out, in): dS_k = dW at S's
// position k, dB = s dW A^T, dA = s B^T dW. Parameters: a quarter of the dense projections' at r = 4, delta = 0.05.
#include "model/sltrain.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "model/model.h"
#include "tests/unit/model/tiny_model.h"

namespace memtrain::model {
namespace {

using testing::find;
using testing::tiny_model;

TEST(SlTrainSupport, IsUniformWithTheConfiguredDensity) {
  const int64_t n = 200000;
  const double delta = 0.03;
  const std::vector<int64_t> s = sltrain_support("transformer.h.0.mlp.c_fc", n, delta);
  EXPECT_EQ(s, sltrain_support("transformer.h.0.mlp.c_fc", n, delta));
  EXPECT_NE(s, sltrain_support("transformer.h.1.mlp.c_fc", n, delta));
  for (size_t k = 1; k < s.size(); ++k) ASSERT_LT(s[k - 1], s[k]);
  ASSERT_FALSE(s.empty());
  EXPECT_GE(s.front(), 0);
  EXPECT_LT(s.back(), n);
  auto within = [&](int64_t count, int64_t cells) {
    const double mean = cells * delta, sd = std::sqrt(cells * delta * (1 - delta));
    return std::fabs(count - mean) <= 5 * sd;
  };
  EXPECT_TRUE(within(static_cast<int64_t>(s.size()), n)) << s.size();
  std::vector<int64_t> tenths(10, 0);
  for (int64_t p : s) ++tenths[p * 10 / n];
  for (int t = 0; t < 10; ++t) EXPECT_TRUE(within(tenths[t], n / 10)) << "tenth " << t << ": " << tenths[t];
}

constexpr int64_t kB = 2, kT = 11;
constexpr uint64_t kSeed = 7;

double run(Model& model, const Tensor& tokens, const Tensor& targets) {
  ActivationStore store;
  const double loss = *model.forward(tokens, targets, 1.0f / (kB * kT), store);
  MEMTRAIN_CHECK_OK(model.backward(store));
  return loss;
}

class SlTrainModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SlTrainModelTest, LossAndGradientsMatchTheMergedDenseModel) {
  const std::string arch = GetParam();
  ModelConfig cfg = tiny_model(arch);
  cfg.sltrain_rank = 4;
  cfg.sltrain_delta = 0.05;
  cfg.sltrain_alpha = 8;
  const float s = 2.0f;  // alpha / r
  ParamSet sl;
  auto sl_model = *Model::create(cfg, sl);
  ASSERT_TRUE(sl.allocate().ok());
  sl.initialize(kSeed);
  std::mt19937 rng(11);
  std::normal_distribution<float> d(0.0f, 0.2f);
  for (const auto& p : sl.all())
    if (p->name.find(".sltrain.B") != std::string::npos)
      for (int64_t i = 0; i < p->value.numel(); ++i) p->value.f32()[i] = d(rng);

  ParamSet dense;
  auto dense_model = *Model::create(tiny_model(arch), dense);
  ASSERT_TRUE(dense.allocate().ok());
  int64_t dense_projection = 0, factored = 0;
  for (const auto& w : dense.all()) {
    if (!w->projection) {
      const Param& same = find(sl, w->name);
      std::copy_n(same.value.f32(), w->value.numel(), w->value.f32());
      continue;
    }
    const std::string prefix = w->name.substr(0, w->name.rfind('.'));
    const Param& A = find(sl, prefix + ".sltrain.A");
    const Param& B = find(sl, prefix + ".sltrain.B");
    const Param& S = find(sl, prefix + ".sltrain.values");
    const int64_t out = B.shape[0], in = A.shape[1], r = A.shape[0];
    const std::vector<int64_t> support = sltrain_support(prefix, w->value.numel(), cfg.sltrain_delta);
    ASSERT_EQ(static_cast<int64_t>(support.size()), S.value.numel());
    float* W = w->value.f32();
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) {
        double v = 0;
        for (int64_t k = 0; k < r; ++k) v += static_cast<double>(B.value.f32()[o * r + k]) * A.value.f32()[k * in + i];
        W[w->in_out ? i * out + o : o * in + i] = static_cast<float>(s * v);
      }
    for (size_t k = 0; k < support.size(); ++k) W[support[k]] += S.value.f32()[k];
    dense_projection += w->value.numel();
    factored += A.value.numel() + B.value.numel() + S.value.numel();
  }
  EXPECT_LT(factored * 3, dense_projection) << "the factors hold under a third of the dense projections";

  Tensor tokens = *Tensor::empty({kB, kT}, DType::kI32, MemCategory::kActivations);
  Tensor targets = *Tensor::empty({kB, kT}, DType::kI32, MemCategory::kActivations);
  for (int64_t i = 0; i < kB * kT; ++i) {
    tokens.i32()[i] = static_cast<int32_t>(rng() % cfg.vocab_size);
    targets.i32()[i] = static_cast<int32_t>(rng() % cfg.vocab_size);
  }
  const double ls = run(*sl_model, tokens, targets), ld = run(*dense_model, tokens, targets);
  EXPECT_NEAR(ls, ld, 1e-5 * std::fabs(ld));

  for (const auto& w : dense.all()) {
    if (!w->projection) {
      const Param& same = find(sl, w->name);
      for (int64_t i = 0; i < w->grad.numel(); ++i)
        ASSERT_NEAR(same.grad.f32()[i], w->grad.f32()[i], 1e-5 + 1e-4 * std::fabs(w->grad.f32()[i])) << w->name;
      continue;
    }
    SCOPED_TRACE(w->name);
    const std::string prefix = w->name.substr(0, w->name.rfind('.'));
    const Param& A = find(sl, prefix + ".sltrain.A");
    const Param& B = find(sl, prefix + ".sltrain.B");
    const Param& S = find(sl, prefix + ".sltrain.values");
    const int64_t out = B.shape[0], in = A.shape[1], r = A.shape[0];
    std::vector<double> dW(out * in);  // (out, in)
    double largest = 0;
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) {
        dW[o * in + i] = w->grad.f32()[w->in_out ? i * out + o : o * in + i];
        largest = std::max(largest, std::fabs(dW[o * in + i]));
      }
    const double tol = 1e-4 * largest + 1e-7;
    const std::vector<int64_t> support = sltrain_support(prefix, w->value.numel(), cfg.sltrain_delta);
    for (size_t k = 0; k < support.size(); ++k) ASSERT_NEAR(S.grad.f32()[k], w->grad.f32()[support[k]], tol) << k;
    for (int64_t o = 0; o < out; ++o)
      for (int64_t k = 0; k < r; ++k) {
        double ref = 0;
        for (int64_t i = 0; i < in; ++i) ref += s * dW[o * in + i] * A.value.f32()[k * in + i];
        ASSERT_NEAR(B.grad.f32()[o * r + k], ref, tol) << "dB";
      }
    for (int64_t k = 0; k < r; ++k)
      for (int64_t i = 0; i < in; ++i) {
        double ref = 0;
        for (int64_t o = 0; o < out; ++o) ref += s * B.value.f32()[o * r + k] * dW[o * in + i];
        ASSERT_NEAR(A.grad.f32()[k * in + i], ref, tol) << "dA";
      }
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, SlTrainModelTest, ::testing::Values("gpt2", "llama"));

}  // namespace
}  // namespace memtrain::model
