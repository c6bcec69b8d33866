// Gradient clipping against torch's definition computed in float64, the schedules against their closed forms,
// and AdamW's decay groups.
#include <gtest/gtest.h>

#include <cmath>

#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "optim/lr_schedule.h"

namespace memtrain::optim {
namespace {

model::ParamSet make_params() {
  model::ParamSet ps;
  ps.add("w", {3, 7}, model::ParamKind::kWeight, {});
  ps.add("b", {7}, model::ParamKind::kBias, {});
  ps.add("e", {5, 3}, model::ParamKind::kEmbedding, {});
  ps.add("n", {3}, model::ParamKind::kNorm, {});
  MEMTRAIN_CHECK_OK(ps.allocate());
  float v = 0.1f;
  for (const auto& p : ps.all())
    for (int64_t i = 0; i < p->grad.numel(); ++i) p->grad.f32()[i] = (v = -v * 1.07f);
  return ps;
}

TEST(GradClip, NormAndScaleFollowTorch) {
  model::ParamSet ps = make_params();
  double sq = 0;
  for (const auto& p : ps.all())
    for (int64_t i = 0; i < p->grad.numel(); ++i) sq += double(p->grad.f32()[i]) * p->grad.f32()[i];
  const double norm = std::sqrt(sq);
  std::vector<float> before;
  for (const auto& p : ps.all()) before.insert(before.end(), p->grad.f32(), p->grad.f32() + p->grad.numel());
  EXPECT_NEAR(global_grad_norm(ps), norm, 1e-12 * norm);
  const double max_norm = norm / 3;
  EXPECT_NEAR(clip_grad_norm(ps, max_norm), norm, 1e-12 * norm);
  const double coef = max_norm / (norm + 1e-6);  // torch: clip_coef = max_norm / (total_norm + 1e-6)
  size_t k = 0;
  for (const auto& p : ps.all())
    for (int64_t i = 0; i < p->grad.numel(); ++i, ++k) ASSERT_NEAR(p->grad.f32()[i], before[k] * coef, 1e-7);
  EXPECT_NEAR(global_grad_norm(ps), max_norm, 1e-5 * max_norm);
  // A norm under the limit leaves the gradients alone; 0 only measures.
  const double small = global_grad_norm(ps);
  EXPECT_NEAR(clip_grad_norm(ps, 10 * small), small, 1e-12);
  EXPECT_NEAR(clip_grad_norm(ps, 0), small, 1e-12);
  EXPECT_NEAR(global_grad_norm(ps), small, 1e-12);
}

TEST(LrSchedule, WarmupThenCosineLinearOrConstant) {
  OptimConfig c;
  c.lr = 1e-3;
  c.min_lr = 1e-4;
  c.warmup_steps = 10;
  EXPECT_DOUBLE_EQ(learning_rate(c, 0, 110), 1e-4);  // (0 + 1) / 10 of lr: never 0
  EXPECT_DOUBLE_EQ(learning_rate(c, 9, 110), 1e-3);
  EXPECT_DOUBLE_EQ(learning_rate(c, 10, 110), 1e-3);  // decay starts at its top
  EXPECT_NEAR(learning_rate(c, 60, 110), 1e-4 + 0.5 * (1 + std::cos(M_PI * 0.5)) * 9e-4, 1e-15);
  EXPECT_DOUBLE_EQ(learning_rate(c, 110, 110), 1e-4);
  EXPECT_DOUBLE_EQ(learning_rate(c, 500, 110), 1e-4);  // the floor after the end
  c.schedule = "linear";
  EXPECT_NEAR(learning_rate(c, 35, 110), 1e-4 + 0.75 * 9e-4, 1e-15);
  c.schedule = "constant";
  EXPECT_DOUBLE_EQ(learning_rate(c, 100, 110), 1e-3);
  c.schedule = "cosine";
  c.decay_steps = 60;  // decay over [10, 60), then the floor, whatever max_steps is
  EXPECT_NEAR(learning_rate(c, 35, 1000), 1e-4 + 0.5 * (1 + std::cos(M_PI * 0.5)) * 9e-4, 1e-15);
  EXPECT_DOUBLE_EQ(learning_rate(c, 60, 1000), 1e-4);
}

TEST(AdamW, DecayGroupsFollowTheConfig) {
  model::ParamSet ps = make_params();
  OptimConfig c;
  auto opt = AdamW::create(ps, c);
  ASSERT_TRUE(opt.ok());
  EXPECT_TRUE(opt->decays(*ps.find("w")));
  EXPECT_FALSE(opt->decays(*ps.find("b")));
  EXPECT_FALSE(opt->decays(*ps.find("e")));
  EXPECT_FALSE(opt->decays(*ps.find("n")));
  c.decay_embeddings = true;
  c.decay_norms_and_biases = true;
  auto all = AdamW::create(ps, c);
  for (const char* name : {"w", "b", "e", "n"}) EXPECT_TRUE(all->decays(*ps.find(name))) << name;
}

TEST(AdamW, StateIsAccountedAsOptimizerState) {
  model::ParamSet ps = make_params();
  const int64_t before = MemoryTracker::host().current(MemCategory::kOptimizerState);
  auto opt = AdamW::create(ps, OptimConfig{});
  EXPECT_EQ(MemoryTracker::host().current(MemCategory::kOptimizerState) - before, 2 * 4 * ps.numel());
}

}  // namespace
}  // namespace memtrain::optim
