// LoRA and QLoRA inside the models, against the plain model computed another way. The adapters' model with B = 0
// is the base model bit for bit; with trained-looking adapters its loss equals the plain model's with the merged
// weights W + (alpha/r) B A, and its adapter gradients equal what the chain rule makes of the merged model's
// weight gradient: dB = s dW A^T, dA = s B^T dW (dW in (out, in)). The base stays frozen: no gradients, nothing
// in the trainable set but adapters. QLoRA's NF4 base gives the same loss and gradients as an fp32 base holding
// the dequantized weights, and a few adapter elements are checked against finite differences. PeriodicLoRA's
// restart merges into the base exactly and keeps the function.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "model/lora.h"
#include "model/model.h"
#include "tests/unit/model/tiny_model.h"

namespace memtrain::model {
namespace {

using testing::find;
using testing::tiny_model;

constexpr int64_t kB = 2, kT = 11;
constexpr uint64_t kSeed = 7;

LoraSpec spec_for(const std::string& arch, bool nf4 = false, bool freeze_a = false) {
  LoraSpec s;
  s.r = 4;
  s.alpha = 8;
  s.target_modules = arch == "gpt2" ? std::vector<std::string>{"c_attn", "c_proj", "c_fc"}
                             : std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                        "up_proj", "down_proj"};
  s.quantize_base = nf4 ? "nf4" : "none";
  s.fa = freeze_a;
  return s;
}

struct Batch {
  Tensor tokens, targets;
};
Batch batch(int64_t V) {
  Batch b{*Tensor::empty({kB, kT}, DType::kI32, MemCategory::kActivations),
          *Tensor::empty({kB, kT}, DType::kI32, MemCategory::kActivations)};
  std::mt19937 rng(3);
  for (int64_t i = 0; i < kB * kT; ++i) {
    b.tokens.i32()[i] = static_cast<int32_t>(rng() % V);
    b.targets.i32()[i] = static_cast<int32_t>(rng() % V);
  }
  return b;
}

struct Tuned {
  ParamSet adapters;
  ParamSet& base() const { return *adapters.frozen_set(); }
  std::unique_ptr<Model> model;
};
// A fine-tuned model with the base from kSeed and B drawn at random (as after some training); with nf4 the base
// projections are quantized.
std::unique_ptr<Tuned> make_tuned(const std::string& arch, const LoraSpec& spec) {
  auto t = std::make_unique<Tuned>();
  t->adapters.fine_tune(spec);
  t->model = *Model::create(tiny_model(arch), t->adapters);
  MEMTRAIN_CHECK_OK(t->base().allocate());
  MEMTRAIN_CHECK_OK(t->adapters.allocate());
  t->base().initialize(kSeed);
  t->adapters.initialize(kSeed);
  std::mt19937 rng(11);
  std::normal_distribution<float> d(0.0f, 0.05f);
  for (const ParamSet* set : {&t->adapters, &t->base()})
    for (const auto& p : set->all())
      if (p->adapter && p->name.find("lora_B") != std::string::npos)
        for (int64_t i = 0; i < p->value.numel(); ++i) p->value.f32()[i] = d(rng);
  if (spec.nf4()) MEMTRAIN_CHECK_OK(t->base().quantize_frozen_projections());
  return t;
}

struct Plain {
  ParamSet params;
  std::unique_ptr<Model> model;
};
// The plain model holding the tuned one's merged weights.
std::unique_ptr<Plain> merged(const std::string& arch, const Tuned& t) {
  auto m = std::make_unique<Plain>();
  m->model = *Model::create(tiny_model(arch), m->params);
  MEMTRAIN_CHECK_OK(m->params.allocate());
  MEMTRAIN_CHECK_OK(merge_adapters(t.adapters, m->params));
  return m;
}

double run(Model& model, const Batch& b) {
  ActivationStore store;
  const double loss = *model.forward(b.tokens, b.targets, 1.0f / (kB * kT), store);
  MEMTRAIN_CHECK_OK(model.backward(store));
  MEMTRAIN_CHECK(store.empty());
  return loss;
}

// The merged model's weight gradient of projection `prefix` as (out, in).
std::vector<double> weight_grad_out_in(const Param& w) {
  const int64_t a = w.shape[0], b = w.shape[1];
  std::vector<double> g(a * b);
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j) {
      const double v = w.grad.f32()[i * b + j];
      if (w.in_out) g[j * a + i] = v; else g[i * b + j] = v;
    }
  return g;
}

// Every adapter gradient against the chain rule through the merged model's weight gradients.
void expect_adapter_grads_match(const Tuned& t, const Plain& m, float s, bool freeze_a) {
  int checked = 0;
  for (const auto& w : m.params.all()) {
    if (!w->projection) continue;
    const std::string prefix = w->name.substr(0, w->name.rfind('.'));
    const Param& A = find(freeze_a ? t.base() : t.adapters, prefix + ".lora_A.weight");
    const Param& B = find(t.adapters, prefix + ".lora_B.weight");
    const std::vector<double> dW = weight_grad_out_in(*w);
    const int64_t out = B.shape[0], in = A.shape[1], r = A.shape[0];
    double scale_ref = 0;
    for (double v : dW) scale_ref = std::max(scale_ref, std::fabs(v));
    for (int64_t o = 0; o < out; ++o)
      for (int64_t k = 0; k < r; ++k) {
        double ref = 0;
        for (int64_t i = 0; i < in; ++i) ref += s * dW[o * in + i] * A.value.f32()[k * in + i];
        ASSERT_NEAR(B.grad.f32()[o * r + k], ref, 1e-4 * scale_ref + 1e-7) << B.name << "[" << o << "," << k << "]";
      }
    if (freeze_a) {
      EXPECT_FALSE(A.grad.defined()) << A.name;
    } else {
      for (int64_t k = 0; k < r; ++k)
        for (int64_t i = 0; i < in; ++i) {
          double ref = 0;
          for (int64_t o = 0; o < out; ++o) ref += s * B.value.f32()[o * r + k] * dW[o * in + i];
          ASSERT_NEAR(A.grad.f32()[k * in + i], ref, 1e-4 * scale_ref + 1e-7) << A.name << "[" << k << "," << i << "]";
        }
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

// The adapters' gradients of the first layer (a few elements of each matrix) against central differences of
// `loss` (the mean token loss; fp32, so eps = 1e-2 and a 2e-3 relative bound).
template <class Loss>
void expect_finite_differences(const Tuned& t, Loss loss) {
  for (const auto& p : t.adapters.all()) {
    if (p->unit != 1) continue;
    for (int64_t i : {int64_t{0}, p->value.numel() / 2 + 1, p->value.numel() - 1}) {
      float& v = p->value.f32()[i];
      const float keep = v, eps = 1e-2f;
      v = keep + eps;
      const double up = loss();
      v = keep - eps;
      const double down = loss();
      v = keep;
      const double fd = (up - down) / (2 * eps);
      EXPECT_NEAR(p->grad.f32()[i], fd, 2e-3 * std::fabs(fd) + 2e-5) << p->name << "[" << i << "]";
    }
  }
}

class LoraModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraModelTest, BaseIsFrozenAndOnlyAdaptersTrain) {
  const std::string arch = GetParam();
  auto t = make_tuned(arch, spec_for(arch));
  ParamSet plain;
  ASSERT_TRUE(Model::create(tiny_model(arch), plain).ok());
  ASSERT_EQ(t->base().all().size(), plain.all().size());  // every base parameter, frozen, in the base set
  for (size_t i = 0; i < plain.all().size(); ++i) {
    EXPECT_EQ(t->base().all()[i]->name, plain.all()[i]->name);
    EXPECT_EQ(t->base().all()[i]->unit, plain.all()[i]->unit);
    EXPECT_TRUE(t->base().all()[i]->frozen);
    EXPECT_FALSE(t->base().all()[i]->grad.defined());
  }
  const int projections = arch == "gpt2" ? 4 : 7;  // per layer
  EXPECT_EQ(t->adapters.all().size(), 2u * projections * tiny_model(arch).n_layer);
  for (const auto& p : t->adapters.all()) {
    EXPECT_TRUE(p->adapter && !p->frozen) << p->name;
    // Adapters live in their block's unit, as the layer's weights do.
    const std::string prefix = p->name.substr(0, p->name.find(".lora_"));
    EXPECT_EQ(p->unit, find(plain, prefix + ".weight").unit) << p->name;
  }
}

TEST_P(LoraModelTest, ZeroInitialisedAdaptersLeaveTheBaseModelBitForBit) {
  const std::string arch = GetParam();
  LoraSpec spec = spec_for(arch);
  Tuned t;
  t.adapters.fine_tune(spec);
  t.model = *Model::create(tiny_model(arch), t.adapters);
  ASSERT_TRUE(t.base().allocate().ok());
  ASSERT_TRUE(t.adapters.allocate().ok());
  t.base().initialize(kSeed);
  t.adapters.initialize(kSeed);  // B = 0
  Plain p;
  p.model = *Model::create(tiny_model(arch), p.params);
  ASSERT_TRUE(p.params.allocate().ok());
  p.params.initialize(kSeed);
  const Batch b = batch(tiny_model(arch).vocab_size);
  EXPECT_EQ(run(*t.model, b), run(*p.model, b));
}

TEST_P(LoraModelTest, LossAndGradientsMatchTheMergedModel) {
  const std::string arch = GetParam();
  for (bool freeze_a : {false, true}) {
    SCOPED_TRACE(freeze_a ? "LoRA-FA" : "LoRA");
    const LoraSpec spec = spec_for(arch, /*nf4=*/false, freeze_a);
    auto t = make_tuned(arch, spec);
    auto m = merged(arch, *t);
    const Batch b = batch(tiny_model(arch).vocab_size);
    const double lt = run(*t->model, b), lm = run(*m->model, b);
    EXPECT_NEAR(lt, lm, 1e-5 * std::fabs(lm));
    expect_adapter_grads_match(*t, *m, spec.scale(), freeze_a);
  }
}

// PeriodicLoRA's stage end: each adapted weight becomes W + s B A (against float64 from the values before, in either
// layout), A is drawn again from the new seed exactly as an initialisation with it (and differs from before), B is
// zero, and the model computes what it did (loss within 1e-5 relative). LoRA-FA's frozen A starts again too.
TEST_P(LoraModelTest, RestartMergesIntoTheBaseAndKeepsTheFunction) {
  const std::string arch = GetParam();
  for (bool freeze_a : {false, true}) {
    SCOPED_TRACE(freeze_a ? "LoRA-FA" : "LoRA");
    const LoraSpec spec = spec_for(arch, /*nf4=*/false, freeze_a);
    auto t = make_tuned(arch, spec);
    const Batch b = batch(tiny_model(arch).vocab_size);
    const double before = run(*t->model, b);
    std::map<std::string, std::vector<float>> old;
    for (const ParamSet* set : {&t->adapters, &t->base()})
      for (const auto& p : set->all()) old[p->name].assign(p->value.f32(), p->value.f32() + p->value.numel());
    const uint64_t seed = adapter_stage_seed(kSeed, 3);
    ASSERT_NE(seed, kSeed);
    ASSERT_TRUE(restart_adapters(t->adapters, seed).ok());
    int merged_count = 0;
    for (const auto& w : t->base().all()) {
      if (!w->projection) continue;
      const std::string prefix = w->name.substr(0, w->name.rfind('.'));
      const Param& A = find(freeze_a ? t->base() : t->adapters, prefix + ".lora_A.weight");
      const Param& B = find(t->adapters, prefix + ".lora_B.weight");
      const std::vector<float>&a = old[A.name], &bv = old[B.name], &w0 = old[w->name];
      const int64_t out = B.shape[0], in = A.shape[1], r = A.shape[0];
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) {
          double delta = 0;
          for (int64_t k = 0; k < r; ++k) delta += static_cast<double>(bv[o * r + k]) * a[k * in + i];
          const int64_t at = w->in_out ? i * out + o : o * in + i;
          const double expected = w0[at] + spec.scale() * delta;
          ASSERT_NEAR(w->value.f32()[at], expected, 1e-6 * (1 + std::fabs(expected))) << w->name;
        }
      std::vector<float> fresh(A.value.numel());
      ParamSet::initialize_local(A, seed, 0, A.value.numel(), fresh.data());
      EXPECT_TRUE(std::equal(fresh.begin(), fresh.end(), A.value.f32())) << A.name;
      EXPECT_FALSE(std::equal(a.begin(), a.end(), A.value.f32())) << A.name;
      for (int64_t k = 0; k < B.value.numel(); ++k) ASSERT_EQ(B.value.f32()[k], 0.0f) << B.name;
      ++merged_count;
    }
    EXPECT_EQ(merged_count, (arch == "gpt2" ? 4 : 7) * tiny_model(arch).n_layer);
    t->adapters.zero_grad();
    EXPECT_NEAR(run(*t->model, b), before, 1e-5 * std::fabs(before));
  }
}

// QLoRA: the NF4 base against an fp32 base holding the dequantized weights (merge_adapters with B = 0 would add
// nothing; the merged model adds the adapters on top of the dequantized base).
TEST_P(LoraModelTest, QloraMatchesTheDequantizedBaseAndFiniteDifferences) {
  const std::string arch = GetParam();
  const LoraSpec spec = spec_for(arch, /*nf4=*/true);
  auto t = make_tuned(arch, spec);
  int quantized = 0;
  for (const auto& p : t->base().all()) {
    if (p->projection) {
      EXPECT_TRUE(p->nf4 != nullptr && !p->value.defined()) << p->name;
      ++quantized;
    } else {
      EXPECT_TRUE(p->nf4 == nullptr && p->value.defined()) << p->name;
    }
  }
  EXPECT_EQ(quantized, (arch == "gpt2" ? 4 : 7) * 2);
  auto m = merged(arch, *t);
  const Batch b = batch(tiny_model(arch).vocab_size);
  const double lt = run(*t->model, b), lm = run(*m->model, b);
  EXPECT_NEAR(lt, lm, 1e-5 * std::fabs(lm));
  expect_adapter_grads_match(*t, *m, spec.scale(), false);

  // Central differences of the loss for a few elements of each adapter matrix of the first layer.
  auto loss_only = [&] {
    ActivationStore discard(/*keep=*/false);
    return *t->model->forward(b.tokens, b.targets, 1.0f / (kB * kT), discard) / (kB * kT);
  };
  expect_finite_differences(*t, loss_only);
}

// LoRA dropout: the masks follow the store's micro-batch (the same one twice gives the same loss, another one
// another loss, none the loss without dropout), and the gradients through the masks match central differences of
// the loss under the same masks.
TEST_P(LoraModelTest, DropoutIsDeterministicPerMicroBatchAndDifferentiable) {
  const std::string arch = GetParam();
  LoraSpec spec = spec_for(arch);
  spec.dropout = 0.3;
  auto t = make_tuned(arch, spec);
  const Batch b = batch(tiny_model(arch).vocab_size);
  auto loss_with = [&](int64_t micro, bool backward) {
    ActivationStore store(/*keep=*/true);
    if (micro >= 0) store.set_dropout(kSeed, micro);
    const double loss = *t->model->forward(b.tokens, b.targets, 1.0f / (kB * kT), store) / (kB * kT);
    if (backward) {
      MEMTRAIN_CHECK_OK(t->model->backward(store));
    } else {
      store.clear();
    }
    return loss;
  };
  const double l5 = loss_with(5, false);
  EXPECT_EQ(loss_with(5, false), l5);
  EXPECT_NE(loss_with(6, false), l5);
  EXPECT_NE(loss_with(-1, false), l5);

  t->adapters.zero_grad();
  loss_with(5, true);
  expect_finite_differences(*t, [&] { return loss_with(5, false); });
}

INSTANTIATE_TEST_SUITE_P(Archs, LoraModelTest, ::testing::Values("gpt2", "llama"));

}  // namespace
}  // namespace memtrain::model
