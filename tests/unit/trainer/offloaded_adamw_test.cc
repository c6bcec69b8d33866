// AdamW with its moments on disk (offload.optimizer = "ssd"): the same updates as in-memory AdamW bit for bit, for
// targets smaller than a group, split across groups, and at offsets (ZeRO pieces); at most three groups' moments
// in memory, as peak_state_bytes says; the checkpoint arrays are AdamW's moments, and a restore carries on exactly.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "offload/ssd_swap.h"
#include "optim/adamw.h"
#include "optim/offloaded_adamw.h"

namespace memtrain::optim {
namespace {

struct Tensors {
  model::ParamSet params;
  std::vector<Tensor> grads;
  std::vector<OptimTarget> targets;
};

// Three parameters: a small one, one of 2.5 groups, and a piece [100, 100 + n) of a third (a ZeRO shard).
std::unique_ptr<Tensors> make(uint32_t seed) {
  auto t = std::make_unique<Tensors>();
  const int64_t G = OffloadedAdamW::kGroup;
  t->params.add("a.weight", {7, 9}, model::ParamKind::kWeight, {});
  t->params.add("b.weight", {5, G / 2}, model::ParamKind::kWeight, {});
  t->params.add("c.bias", {G + 300}, model::ParamKind::kBias, {});
  MEMTRAIN_CHECK_OK(t->params.allocate());
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  for (const auto& p : t->params.all()) {
    for (int64_t i = 0; i < p->value.numel(); ++i) p->value.f32()[i] = normal(rng);
    t->grads.push_back(*Tensor::empty(p->shape, DType::kF32, MemCategory::kGradients));
  }
  for (size_t k = 0; k < t->grads.size(); ++k) {
    const model::Param* p = t->params.all()[k].get();
    const int64_t offset = k == 2 ? 100 : 0, n = p->value.numel() - offset;
    t->targets.push_back({p, p->value.f32() + offset, t->grads[k].f32() + offset, n, offset});
  }
  return t;
}

void fill_grads(Tensors& t, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  for (const Tensor& g : t.grads)
    for (int64_t i = 0; i < g.numel(); ++i) g.f32()[i] = normal(rng);
}

bool same_values(const Tensors& a, const Tensors& b) {
  for (size_t k = 0; k < a.params.all().size(); ++k) {
    const Tensor& x = a.params.all()[k]->value;
    if (std::memcmp(x.raw(), b.params.all()[k]->value.raw(), x.nbytes()) != 0) return false;
  }
  return true;
}

TEST(OffloadedAdamW, UpdatesAreAdamWsBitForBitAndAtMostThreeGroupsAreInMemory) {
  OptimConfig cfg;
  cfg.weight_decay = 0.1;
  auto tier = *offload::SsdSwap::create(::testing::TempDir(), "optim");
  auto ref = make(1), off = make(1);
  AdamW adamw = *AdamW::create(ref->targets, cfg);
  auto offloaded = *OffloadedAdamW::create(off->targets, cfg, tier.get());
  MemoryTracker& mt = MemoryTracker::host();
  const int64_t before = mt.current(MemCategory::kOptimizerState);
  for (int step = 1; step <= 4; ++step) {
    fill_grads(*ref, step);
    fill_grads(*off, step);
    ASSERT_TRUE(adamw.step(1e-3 * step).ok());
    mt.reset_peaks();
    ASSERT_TRUE(offloaded->step(1e-3 * step).ok());
    EXPECT_TRUE(same_values(*ref, *off)) << "step " << step;
    EXPECT_EQ(mt.peak(MemCategory::kOptimizerState) - before, OffloadedAdamW::peak_state_bytes(off->targets));
    EXPECT_EQ(mt.current(MemCategory::kOptimizerState), before);
  }
  // Largest three consecutive groups: b's three (0.5 + 1 + 1... of a group each) or c's.
  EXPECT_LE(OffloadedAdamW::peak_state_bytes(off->targets), 3 * 8 * OffloadedAdamW::kGroup);

  // The checkpoint arrays are AdamW's moments; restoring them into a fresh optimizer carries on exactly.
  auto saved = *offloaded->checkpoint_state();
  auto ref_saved = *adamw.checkpoint_state();
  ASSERT_EQ(saved.arrays.size(), ref_saved.arrays.size());
  for (size_t k = 0; k < saved.arrays.size(); ++k) {
    EXPECT_EQ(saved.arrays[k].name, ref_saved.arrays[k].name);
    EXPECT_EQ(std::memcmp(saved.arrays[k].data, ref_saved.arrays[k].data, 4 * saved.arrays[k].target.n), 0) << k;
  }
  auto resumed = *OffloadedAdamW::create(off->targets, cfg, tier.get());
  auto into = *resumed->checkpoint_state();  // arrays to read a checkpoint into
  for (size_t k = 0; k < into.arrays.size(); ++k)
    std::memcpy(into.arrays[k].data, saved.arrays[k].data, 4 * saved.arrays[k].target.n);
  ASSERT_TRUE(resumed->restore(into, offloaded->steps_taken()).ok());
  offloaded.reset();
  fill_grads(*ref, 9);
  fill_grads(*off, 9);
  ASSERT_TRUE(adamw.step(2e-3).ok());
  ASSERT_TRUE(resumed->step(2e-3).ok());
  EXPECT_TRUE(same_values(*ref, *off));
}

}  // namespace
}  // namespace memtrain::optim
