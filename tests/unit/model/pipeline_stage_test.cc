// A model cut into pipeline stages, run stage after stage in one process (each stage's output handed to the next in
// forward, each input gradient to the previous in backward, middle stages' weight gradients deferred as zero bubble
// does), computes what the whole model computes: the same loss and the same gradient of every parameter, bit for
// bit - the same operations in the same order. The tied
// token embedding is the exception by design: the first stage's copy gets the embedding's gradient, the last
// stage's copy the head's, and their sum is the whole model's (within fp32 rounding of one addition).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "tests/unit/model/tiny_model.h"

namespace memtrain::model {
namespace {

struct Built {
  std::unique_ptr<ParamSet> params;
  std::unique_ptr<Model> model;
};

Built build(const ModelConfig& cfg, const PipelineStage& stage) {
  Built b{std::make_unique<ParamSet>(), nullptr};
  auto m = Model::create(cfg, *b.params, {}, {}, stage);
  EXPECT_TRUE(m.ok()) << m.status();
  b.model = std::move(*m);
  EXPECT_TRUE(b.params->allocate().ok());
  b.params->initialize(7);
  return b;
}

// Cuts at the given layer boundaries: {0, 2, 4} -> stages [0, 2) and [2, 4).
std::vector<PipelineStage> stages_at(const std::vector<int64_t>& cuts) {
  std::vector<PipelineStage> out;
  for (size_t i = 0; i + 1 < cuts.size(); ++i)
    out.push_back({cuts[i], cuts[i + 1], i == 0, i + 2 == cuts.size()});
  return out;
}

TEST(PipelineStages, StageByStageEqualsTheWholeModel) {
  for (const std::string arch : {"gpt2", "llama"}) {
    for (const std::string tie : {"auto", "true"}) {
      if (arch == "gpt2" && tie == "true") continue;  // GPT-2 ties by default
      ModelConfig cfg = testing::tiny_model(arch);
      cfg.n_layer = 4;
      cfg.tie_embeddings = tie;
      const int64_t B = 2, T = 24;
      auto tokens = Tensor::empty({B, T}, DType::kI32, MemCategory::kActivations);
      auto targets = Tensor::empty({B, T}, DType::kI32, MemCategory::kActivations);
      ASSERT_TRUE(tokens.ok() && targets.ok());
      for (int64_t i = 0; i < B * T; ++i) {
        tokens->i32()[i] = static_cast<int32_t>((i * 17 + 3) % cfg.vocab_size);
        targets->i32()[i] = static_cast<int32_t>((i * 29 + 1) % cfg.vocab_size);
      }
      const float scale = 1.0f / (B * T);
      Built whole = build(cfg, PipelineStage::whole());
      ActivationStore whole_store;
      auto whole_loss = whole.model->forward(*tokens, *targets, scale, whole_store);
      ASSERT_TRUE(whole_loss.ok());
      ASSERT_TRUE(whole.model->backward(whole_store).ok());
      std::map<std::string, const Param*> reference;
      for (const auto& p : whole.params->all()) reference[p->name] = p.get();

      for (const auto& cuts : std::vector<std::vector<int64_t>>{{0, 2, 4}, {0, 1, 2, 3, 4}, {0, 0, 4}, {0, 4, 4}}) {
        SCOPED_TRACE(::testing::Message() << arch << " tie=" << tie << " cuts " << cuts[1] << "," << cuts[2]);
        std::vector<Built> stages;
        for (const PipelineStage& st : stages_at(cuts)) stages.push_back(build(cfg, st));
        std::vector<ActivationStore> stores(stages.size());
        Tensor x;
        double loss = -1;
        for (size_t s = 0; s < stages.size(); ++s) {
          auto out = stages[s].model->forward_stage(*tokens, *targets, x, scale, stores[s], &loss);
          ASSERT_TRUE(out.ok()) << out.status();
          x = *out;
        }
        EXPECT_FALSE(x.defined()) << "the last stage returns no activation";
        EXPECT_EQ(loss, *whole_loss);
        // The middle stages defer their weight gradients (zero bubble) and run them after every input gradient:
        // the same products, so the same bits.
        Tensor dy;
        for (size_t s = stages.size(); s-- > 0;) {
          const bool defer = s > 0 && s + 1 < stages.size();
          stores[s].defer_weight_grads(defer);
          auto dx = stages[s].model->backward_stage(dy, stores[s]);
          ASSERT_TRUE(dx.ok()) << dx.status();
          EXPECT_TRUE(stores[s].empty());
          EXPECT_EQ(stores[s].has_weight_grads(), defer && stages[s].model->num_blocks() > 0);
          dy = *dx;
        }
        for (ActivationStore& st : stores) ASSERT_TRUE(st.run_weight_grads().ok());
        EXPECT_FALSE(dy.defined()) << "the first stage returns no input gradient";

        // Every parameter on exactly one stage, except the tied embedding on the first and the last.
        std::map<std::string, std::vector<const Param*>> copies;
        for (const Built& b : stages) {
          for (const auto& p : b.params->all()) {
            copies[p->name].push_back(p.get());
            EXPECT_LT(p->unit, b.model->num_units()) << p->name;
          }
          EXPECT_EQ(b.params->num_units(), b.model->num_units());
        }
        ASSERT_EQ(copies.size(), reference.size());
        for (const auto& [name, parts] : copies) {
          const Param& ref = *reference.at(name);
          const int64_t n = ref.grad.numel();
          if (parts.size() == 1) {
            EXPECT_TRUE(std::equal(ref.grad.f32(), ref.grad.f32() + n, parts[0]->grad.f32())) << name;
            continue;
          }
          ASSERT_EQ(parts.size(), 2u) << name;
          ASSERT_TRUE(cfg.tied()) << name;
          double diff = 0, norm = 0;
          for (int64_t i = 0; i < n; ++i) {
            const double sum = double(parts[0]->grad.f32()[i]) + parts[1]->grad.f32()[i];
            diff += (sum - ref.grad.f32()[i]) * (sum - ref.grad.f32()[i]);
            norm += double(ref.grad.f32()[i]) * ref.grad.f32()[i];
          }
          EXPECT_LT(std::sqrt(diff / norm), 1e-6) << name;
          EXPECT_TRUE(std::equal(parts[0]->value.f32(), parts[0]->value.f32() + n, parts[1]->value.f32()))
              << "both copies start from the same values";
        }
      }
    }
  }
}

}  // namespace
}  // namespace memtrain::model
