// The restartable optimizer PeriodicLoRA steps: AdamW whose state starts afresh (zero moments, bias correction from
// step 1) after every period, against a float64 AdamW reset at the same steps; the state freed on restart and made
// anew (the allocator's optimizer_state holds one copy); a checkpoint taken mid-period restores to the same
// updates bit for bit, with the run's step count kept and the inner one taken from the period's start.
#include "optim/restartable.h"

#include <gtest/gtest.h>

#include <random>

#include "core/memory.h"
#include "tests/unit/optim/float64_reference.h"

namespace memtrain::optim {
namespace {

constexpr int64_t kPeriod = 3;

struct Trained {
  model::ParamSet ps;
  std::unique_ptr<Restartable> opt;
  explicit Trained(const OptimConfig& c) {
    ps.add("transformer.h.0.attn.c_attn.lora_B.weight", {6, 4}, model::ParamKind::kWeight, {});
    MEMTRAIN_CHECK_OK(ps.allocate());
    std::mt19937 rng(5);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (int64_t i = 0; i < 24; ++i) value()[i] = d(rng);
    auto made = Restartable::create([this, c] { return create_optimizer(whole_targets(ps), c); }, kPeriod);
    MEMTRAIN_CHECK_OK(made.status());
    opt = std::move(*made);
  }
  float* value() { return ps.all()[0]->value.f32(); }
  float* grad() { return ps.all()[0]->grad.f32(); }
  // Step `step` (0-based) with its gradient, restarting after each period's last.
  void step(int64_t step) {
    std::mt19937 rng(100 + step);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (int64_t i = 0; i < 24; ++i) grad()[i] = d(rng);
    MEMTRAIN_CHECK_OK(opt->step(1e-2));
    if ((step + 1) % kPeriod == 0) MEMTRAIN_CHECK_OK(opt->restart());
  }
};

TEST(Restartable, EachPeriodStartsFromFreshAdamWState) {
  OptimConfig c;
  c.weight_decay = 0.1;
  MemoryTracker& mt = MemoryTracker::host();
  const int64_t before = mt.current(MemCategory::kOptimizerState);
  Trained run(c);
  testing::AdamWReference ref;
  ref.w.assign(run.value(), run.value() + 24);
  ref.m.assign(24, 0.0);
  ref.v.assign(24, 0.0);
  for (int64_t step = 0; step < 8; ++step) {
    run.step(step);
    ref.step(run.grad(), 1e-2, c, /*decay=*/true);
    if ((step + 1) % kPeriod == 0) ref.reset();
    EXPECT_EQ(mt.current(MemCategory::kOptimizerState) - before, 8 * 24) << "one state, step " << step;
  }
  EXPECT_EQ(run.opt->steps_taken(), 8);
  EXPECT_LT(testing::relative_difference(run.ps.all()[0]->value, ref.w), 1e-6);
  // Without the resets the same steps end elsewhere: the test sees them.
  testing::AdamWReference straight;
  Trained plain(c);
  straight.w.assign(plain.value(), plain.value() + 24);
  straight.m.assign(24, 0.0);
  straight.v.assign(24, 0.0);
  for (int64_t step = 0; step < 8; ++step) {
    plain.step(step);
    straight.step(plain.grad(), 1e-2, c, true);
  }
  EXPECT_GT(testing::relative_difference(plain.ps.all()[0]->value, straight.w), 1e-4);
  run.opt.reset();
  plain.opt.reset();
  EXPECT_EQ(mt.current(MemCategory::kOptimizerState), before);
}

TEST(Restartable, ResumesMidPeriodBitForBit) {
  OptimConfig c;
  Trained whole(c), first(c);
  for (int64_t step = 0; step < 8; ++step) whole.step(step);
  for (int64_t step = 0; step < 4; ++step) first.step(step);  // one step into the second period
  auto saved = first.opt->checkpoint_state();
  ASSERT_TRUE(saved.ok()) << saved.status();
  std::vector<std::vector<float>> arrays;
  for (const CheckpointArray& a : saved->arrays) {
    const float* f = static_cast<const float*>(a.data);
    arrays.emplace_back(f, f + a.target.n);
  }
  // A new run holding the same values resumes from the arrays, as a checkpoint gives them back.
  Trained second(c);
  std::copy_n(first.value(), 24, second.value());
  ASSERT_TRUE(second.opt->prepare_resume(4).ok());
  auto into = second.opt->checkpoint_state();
  ASSERT_TRUE(into.ok());
  ASSERT_EQ(into->arrays.size(), arrays.size());
  for (size_t k = 0; k < arrays.size(); ++k)
    std::copy(arrays[k].begin(), arrays[k].end(), static_cast<float*>(into->arrays[k].data));
  ASSERT_TRUE(second.opt->restore(*into, 4).ok());
  EXPECT_EQ(second.opt->steps_taken(), 4);
  for (int64_t step = 4; step < 8; ++step) second.step(step);
  for (int64_t i = 0; i < 24; ++i) ASSERT_EQ(second.value()[i], whole.value()[i]) << i;
}

}  // namespace
}  // namespace memtrain::optim
