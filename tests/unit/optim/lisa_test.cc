// LISA against a float64 re-implementation of its semantics: the embeddings, final norm and head take AdamW over the
// whole run; each period of K steps, the drawn blocks take AdamW from fresh state (zero moments, bias correction
// from step 1) and the others do not move. The allocator's optimizer_state bytes must be exactly the always-trained
// tensors' state plus the drawn blocks' at every step (none for the others), the plan's peak figure their maximum.
// The draw: gamma distinct blocks, the same for the same (seed, period), uniform over many periods.
#include "optim/lisa.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <set>

#include "core/memory.h"
#include "tests/unit/optim/float64_reference.h"

namespace memtrain::optim {
namespace {

TEST(Lisa, DrawsDistinctBlocksUniformly) {
  const int64_t N = 8, gamma = 3, periods = 4000;
  std::vector<int64_t> counts(N, 0);
  for (int64_t p = 0; p < periods; ++p) {
    const std::vector<int64_t> drawn = Lisa::trained_layers(7, p, N, gamma);
    ASSERT_EQ(drawn.size(), 3u);
    EXPECT_EQ(std::set<int64_t>(drawn.begin(), drawn.end()).size(), 3u) << "period " << p;
    for (int64_t l : drawn) {
      ASSERT_GE(l, 0);
      ASSERT_LT(l, N);
      ++counts[l];
    }
    EXPECT_EQ(drawn, Lisa::trained_layers(7, p, N, gamma));  // every rank draws the same
  }
  // Each block trains in gamma / N of the periods: binomial, 5 standard deviations.
  const double p = static_cast<double>(gamma) / N, mean = periods * p, sd = std::sqrt(periods * p * (1 - p));
  for (int64_t l = 0; l < N; ++l) EXPECT_NEAR(counts[l], mean, 5 * sd) << "block " << l;
  EXPECT_NE(Lisa::trained_layers(7, 0, N, gamma), Lisa::trained_layers(8, 0, N, gamma));
}

TEST(Lisa, StepsMatchPeriodicallyFreshAdamWOnTheDrawnBlocks) {
  OptimConfig c;
  c.lisa_layers = 2;
  c.lisa_interval = 3;
  c.weight_decay = 0.1;
  const int64_t N = 4;
  model::ParamSet ps;
  ps.add("transformer.wte.weight", {6, 4}, model::ParamKind::kEmbedding, {});
  for (int64_t l = 0; l < N; ++l) ps.add("transformer.h." + std::to_string(l) + ".mlp.c_fc.weight", {4, 8},
                                         model::ParamKind::kWeight, {});
  ps.add("transformer.ln_f.weight", {4}, model::ParamKind::kNorm, {});
  ASSERT_TRUE(ps.allocate().ok());
  std::mt19937 rng(11);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<testing::AdamWReference> refs;
  for (const auto& p : ps.all()) {
    testing::AdamWReference r;
    for (int64_t i = 0; i < p->value.numel(); ++i) r.w.push_back(p->value.f32()[i] = d(rng));
    r.m.assign(r.w.size(), 0.0);
    r.v = r.m;
    refs.push_back(r);
  }
  MemoryTracker& mt = MemoryTracker::host();
  const int64_t before = mt.current(MemCategory::kOptimizerState);
  auto opt = Lisa::create(whole_targets(ps), c, N, /*seed=*/5);
  ASSERT_TRUE(opt.ok()) << opt.status();
  const int64_t always = 8 * (24 + 4), block = 8 * 32;
  EXPECT_EQ(Lisa::peak_state_bytes(whole_targets(ps), c), always + 2 * block);
  std::set<std::vector<int64_t>> draws;
  for (int64_t step = 0; step < 10; ++step) {
    for (const auto& p : ps.all())
      for (int64_t i = 0; i < p->grad.numel(); ++i) p->grad.f32()[i] = d(rng);
    const int64_t period = step / c.lisa_interval;
    const std::vector<int64_t> drawn = Lisa::trained_layers(5, period, N, 2);
    draws.insert(drawn);
    ASSERT_TRUE((*opt)->prepare_step().ok());
    EXPECT_EQ((*opt)->trained(), drawn);
    EXPECT_EQ(mt.current(MemCategory::kOptimizerState) - before, always + 2 * block) << "step " << step;
    for (size_t k = 0; k < ps.all().size(); ++k) {
      const model::Param& p = *ps.all()[k];
      const int64_t layer = static_cast<int64_t>(k) - 1;
      const bool is_block = k >= 1 && k <= static_cast<size_t>(N);
      const bool trains = !is_block || std::find(drawn.begin(), drawn.end(), layer) != drawn.end();
      if (!trains) {
        // Its gradient is zeroed for the norm.
        for (int64_t i = 0; i < p.grad.numel(); ++i) ASSERT_EQ(p.grad.f32()[i], 0.0f) << p.name;
        continue;
      }
      if (is_block && step % c.lisa_interval == 0) refs[k].reset();
      refs[k].step(p.grad.f32(), 1e-2, c, decays(p, c));
    }
    ASSERT_TRUE((*opt)->step(1e-2).ok());
  }
  EXPECT_GT(draws.size(), 1u) << "the periods should draw different blocks";
  for (size_t k = 0; k < ps.all().size(); ++k)
    EXPECT_LT(testing::relative_difference(ps.all()[k]->value, refs[k].w), 1e-5) << ps.all()[k]->name;
  opt->reset();
  EXPECT_EQ(mt.current(MemCategory::kOptimizerState), before);
}

}  // namespace
}  // namespace memtrain::optim
