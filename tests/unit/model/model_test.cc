// Whole-model invariants: every saved activation is taken back by backward, the activation bytes a forward leaves
// equal the shape-derived prediction, and a step is bitwise reproducible with 1 and 2 kernel threads.
#include "model/model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/thread_pool.h"
#include "tests/unit/model/tiny_model.h"

namespace memtrain::model {
namespace {

using testing::tiny_model;

struct Run {
  ParamSet params;
  std::unique_ptr<Model> model;
  Tensor tokens, targets;
};

std::unique_ptr<Run> make_run(const ModelConfig& cfg, int64_t B, int64_t T) {
  auto r = std::make_unique<Run>();
  r->model = *Model::create(cfg, r->params);
  MEMTRAIN_CHECK_OK(r->params.allocate());
  r->params.initialize(7);
  r->tokens = *Tensor::empty({B, T}, DType::kI32, MemCategory::kActivations);
  r->targets = *Tensor::empty({B, T}, DType::kI32, MemCategory::kActivations);
  std::mt19937 rng(3);
  for (int64_t i = 0; i < B * T; ++i) {
    r->tokens.i32()[i] = static_cast<int32_t>(rng() % cfg.vocab_size);
    r->targets.i32()[i] = static_cast<int32_t>(rng() % cfg.vocab_size);
  }
  return r;
}

class ModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelTest, BackwardTakesEveryActivationAndFillsEveryGradient) {
  auto r = make_run(tiny_model(GetParam()), 3, 13);
  ActivationStore store;
  auto loss = r->model->forward(r->tokens, r->targets, 1.0f / 39, store);
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_GT(store.size(), 10u);
  ASSERT_TRUE(r->model->backward(store).ok());
  EXPECT_TRUE(store.empty()) << store.keys().front();
  for (const auto& p : r->params.all()) {
    double s = 0;
    for (int64_t i = 0; i < p->grad.numel(); ++i) s += std::abs(p->grad.f32()[i]);
    EXPECT_GT(s, 0.0) << p->name << " got no gradient";
  }
}

TEST_P(ModelTest, ActivationBytesMatchThePrediction) {
  for (auto [B, T] : {std::pair<int64_t, int64_t>{1, 1}, {3, 13}, {2, 24}}) {
    auto r = make_run(tiny_model(GetParam()), B, T);
    MemoryTracker& mt = MemoryTracker::host();
    mt.reset_peaks();
    const int64_t before = mt.current(MemCategory::kActivations);
    ActivationStore store;
    ASSERT_TRUE(r->model->forward(r->tokens, r->targets, 1.0f, store).ok());
    EXPECT_EQ(mt.current(MemCategory::kActivations) - before, r->model->predicted_activation_bytes(B, T))
        << "B=" << B << " T=" << T;
    ASSERT_TRUE(r->model->backward(store).ok());
    // The high-water mark over forward and backward, measured from the same baseline.
    EXPECT_EQ(mt.peak(MemCategory::kActivations) - before, r->model->predicted_peak_activation_bytes(B, T))
        << "B=" << B << " T=" << T;
  }
}

// A forward into a store that keeps nothing (evaluation, zo_sgd) peaks at predicted_forward_only_peak_bytes and
// leaves nothing behind.
TEST_P(ModelTest, ForwardOnlyPeakMatchesThePrediction) {
  for (auto [B, T] : {std::pair<int64_t, int64_t>{1, 1}, {3, 13}, {2, 24}}) {
    auto r = make_run(tiny_model(GetParam()), B, T);
    MemoryTracker& mt = MemoryTracker::host();
    mt.reset_peaks();
    const int64_t before = mt.current(MemCategory::kActivations);
    ActivationStore discard(/*keep=*/false);
    ASSERT_TRUE(r->model->forward(r->tokens, r->targets, 0.0f, discard).ok());
    EXPECT_EQ(mt.current(MemCategory::kActivations), before);
    EXPECT_EQ(mt.peak(MemCategory::kActivations) - before, r->model->predicted_forward_only_peak_bytes(B, T))
        << "B=" << B << " T=" << T;
  }
}

// A zero-bubble pipeline's backward-input leaves the projections' inputs and output gradients to the deferred
// weight gradients: exactly what predicted_deferred_bytes says, all freed once they ran; and its high-water mark
// over forward and backward is predicted_deferring_peak_activation_bytes.
TEST_P(ModelTest, DeferredWeightGradientBytesMatchThePrediction) {
  for (auto [B, T] : {std::pair<int64_t, int64_t>{1, 1}, {3, 13}, {2, 24}}) {
    auto r = make_run(tiny_model(GetParam()), B, T);
    MemoryTracker& mt = MemoryTracker::host();
    mt.reset_peaks();
    const int64_t before = mt.current(MemCategory::kActivations);
    ActivationStore store;
    ASSERT_TRUE(r->model->forward(r->tokens, r->targets, 1.0f, store).ok());
    store.defer_weight_grads(true);
    ASSERT_TRUE(r->model->backward(store).ok());
    EXPECT_TRUE(store.has_weight_grads());
    EXPECT_EQ(mt.current(MemCategory::kActivations) - before, r->model->predicted_deferred_bytes(B, T))
        << "B=" << B << " T=" << T;
    EXPECT_EQ(mt.peak(MemCategory::kActivations) - before, r->model->predicted_deferring_peak_activation_bytes(B, T))
        << "B=" << B << " T=" << T;
    ASSERT_TRUE(store.run_weight_grads().ok());
    EXPECT_EQ(mt.current(MemCategory::kActivations), before);
  }
}

TEST_P(ModelTest, OneAndTwoThreadsGiveBitwiseEqualLossAndGradients) {
  std::vector<std::vector<float>> grads[2];
  double losses[2];
  for (int threads : {1, 2}) {
    ThreadPool::set_global_threads(threads);
    auto r = make_run(tiny_model(GetParam()), 4, 24);
    ActivationStore store;
    losses[threads - 1] = *r->model->forward(r->tokens, r->targets, 1.0f / 96, store);
    ASSERT_TRUE(r->model->backward(store).ok());
    for (const auto& p : r->params.all())
      grads[threads - 1].emplace_back(p->grad.f32(), p->grad.f32() + p->grad.numel());
  }
  ThreadPool::set_global_threads(2);
  EXPECT_EQ(losses[0], losses[1]);
  for (size_t i = 0; i < grads[0].size(); ++i)
    EXPECT_EQ(std::memcmp(grads[0][i].data(), grads[1][i].data(), grads[0][i].size() * 4), 0) << "param " << i;
}

TEST_P(ModelTest, EvaluationKeepsNothingAndGivesTheSameLoss) {
  auto r = make_run(tiny_model(GetParam()), 2, 9);
  ActivationStore keep, discard(/*keep=*/false);
  const double a = *r->model->forward(r->tokens, r->targets, 1.0f, keep);
  const double b = *r->model->forward(r->tokens, r->targets, 1.0f, discard);
  EXPECT_EQ(a, b);
  EXPECT_TRUE(discard.empty());
  ASSERT_TRUE(r->model->backward(keep).ok());
}

TEST_P(ModelTest, RejectsTokensOutsideTheVocabulary) {
  auto r = make_run(tiny_model(GetParam()), 1, 4);
  r->tokens.i32()[2] = 61;
  ActivationStore store;
  auto loss = r->model->forward(r->tokens, r->targets, 1.0f, store);
  ASSERT_FALSE(loss.ok());
  EXPECT_NE(loss.status().message().find("vocab_size"), absl::string_view::npos);
}

// Accumulating two micro-batches of rows [0, 2) and [2, 4) with the whole batch's scale gives the gradients of
// the whole batch: only the fp32 summation order differs (~1e-7 relative per sum), so 1e-5 relative holds and a
// wrong scale or a missed accumulation (errors of 50% or more) cannot pass.
TEST_P(ModelTest, TwoMicroBatchesAccumulateToTheWholeBatchGradient) {
  const int64_t B = 4, T = 11;
  auto whole = make_run(tiny_model(GetParam()), B, T);
  auto split = make_run(tiny_model(GetParam()), B, T);  // same seed: same parameters and batch
  const float scale = 1.0f / (B * T);
  ActivationStore store;
  const double loss = *whole->model->forward(whole->tokens, whole->targets, scale, store);
  ASSERT_TRUE(whole->model->backward(store).ok());
  double loss_split = 0;
  for (int64_t m = 0; m < 2; ++m) {
    Tensor tok = split->tokens.slice_rows(2 * m, 2 * m + 2), tgt = split->targets.slice_rows(2 * m, 2 * m + 2);
    loss_split += *split->model->forward(tok, tgt, scale, store);
    ASSERT_TRUE(split->model->backward(store).ok());
  }
  EXPECT_NEAR(loss_split, loss, 1e-6 * loss);
  const auto& pw = whole->params.all();
  const auto& ps = split->params.all();
  for (size_t i = 0; i < pw.size(); ++i) {
    double diff = 0, ref = 0;
    for (int64_t k = 0; k < pw[i]->grad.numel(); ++k) {
      const double a = ps[i]->grad.f32()[k], b = pw[i]->grad.f32()[k];
      diff += (a - b) * (a - b);
      ref += b * b;
    }
    EXPECT_LE(std::sqrt(diff / ref), 1e-5) << pw[i]->name;
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, ModelTest, ::testing::Values("gpt2", "llama"));

TEST(Model, HuggingFaceNamesAndShapes) {
  ParamSet gp, lp;
  ModelConfig g = tiny_model("gpt2"), l = tiny_model("llama");
  ASSERT_TRUE(Model::create(g, gp).ok());
  ASSERT_TRUE(Model::create(l, lp).ok());
  ASSERT_NE(gp.find("transformer.h.1.attn.c_attn.weight"), nullptr);
  EXPECT_EQ(gp.find("transformer.h.1.attn.c_attn.weight")->shape, (Shape{32, 96}));  // Conv1D: (in, out)
  EXPECT_EQ(gp.find("lm_head.weight"), nullptr);                                        // tied
  ASSERT_NE(lp.find("model.layers.0.self_attn.k_proj.weight"), nullptr);
  EXPECT_EQ(lp.find("model.layers.0.self_attn.k_proj.weight")->shape, (Shape{16, 32}));  // 2 kv heads of 8
  ASSERT_NE(lp.find("lm_head.weight"), nullptr);
  EXPECT_EQ(lp.find("model.layers.1.mlp.gate_proj.weight")->shape, (Shape{96, 32}));  // 2/3*4*32 -> 96
}

}  // namespace
}  // namespace memtrain::model
