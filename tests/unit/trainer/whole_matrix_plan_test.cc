// Optimizers that need whole matrices under ZeRO: stages 1-2 give each matrix to one owner (optim/matrix_owners),
// so the plan's state per rank shrinks with dp (a balanced share, never below an even split) and the owner keeps a
// copy of its matrices' gradients; ZeRO-3 and tensor parallelism are config errors naming optim.name.
#include <gtest/gtest.h>

#include "trainer/plan.h"

namespace memtrain::trainer {
namespace {

int64_t at(const MemoryPlan& p, MemCategory c) { return p.bytes[static_cast<int>(c)]; }

TEST(WholeMatrixPlan, StateIsSharedOverDpRanks) {
  for (const char* name : {"galore_adamw", "adafactor", "apollo_mini"}) {
    SCOPED_TRACE(name);
    Config cfg;
    cfg.model.n_layer = 4;
    cfg.optim.name = name;
    cfg.optim.rank = 32;
    auto whole = plan_memory(cfg, 1);
    ASSERT_TRUE(whole.ok()) << whole.status();
    cfg.zero.stage = 2;
    auto four = plan_memory(cfg, 4);
    ASSERT_TRUE(four.ok()) << four.status();
    const int64_t state = at(*whole, MemCategory::kOptimizerState), shared = at(*four, MemCategory::kOptimizerState);
    EXPECT_LT(shared, state * 6 / 10) << "a quarter, give or take the largest matrix";
    EXPECT_GE(shared, state / 4);
    // ZeRO-2's gradient shard plus the owner's copy of its matrices' gradients: more than the shard alone.
    EXPECT_GT(at(*four, MemCategory::kGradients), at(*whole, MemCategory::kGradients) / 4);
  }
}

TEST(WholeMatrixPlan, ZeroThreeAndTensorParallelismAreConfigErrors) {
  Config cfg;
  cfg.optim.name = "galore_adamw";
  cfg.zero.stage = 3;
  auto staged = plan_memory(cfg, 2);
  ASSERT_FALSE(staged.ok());
  EXPECT_NE(staged.status().message().find("optim.name"), absl::string_view::npos) << staged.status();
  cfg.zero.stage = 1;
  cfg.parallel.tp = 2;
  auto tp = plan_memory(cfg, 2);
  ASSERT_FALSE(tp.ok());
  EXPECT_NE(tp.status().message().find("parallel.tp 1"), absl::string_view::npos) << tp.status();
}

}  // namespace
}  // namespace memtrain::trainer
