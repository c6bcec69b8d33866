// Optimizers that need whole matrices under ZeRO: stages 1-2 give each matrix to one owner (optim/matrix_owners),
// so the plan's state per rank shrinks with dp (a balanced share, never below an even split) and the owner keeps a
// copy of its matrices' gradients; ZeRO-3 is a config error naming optim.name.
#include <gtest/gtest.h>

#include "trainer/distributed.h"
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

TEST(WholeMatrixPlan, ZeroThreeIsAConfigError) {
  Config cfg;
  cfg.optim.name = "galore_adamw";
  cfg.zero.stage = 3;
  auto staged = plan_memory(cfg, 2);
  ASSERT_FALSE(staged.ok());
  EXPECT_NE(staged.status().message().find("optim.name"), absl::string_view::npos) << staged.status();
}

// With tensor parallelism the owner assembles the global matrix: it keeps a copy of the values too, and pieces that
// land in strided places of the global tensor (column-parallel parts) pass through a receive area; without tp
// neither exists.
TEST(WholeMatrixPlan, TensorParallelOwnersCopyValuesAndStagePieces) {
  for (int tp : {1, 2}) {
    SCOPED_TRACE("tp " + std::to_string(tp));
    Config cfg;
    cfg.model.n_layer = 2;
    cfg.optim.name = "apollo";
    cfg.zero.stage = 1;
    cfg.parallel.tp = tp;
    const parallel::MeshShape mesh{tp, 1, 2, 1};  // dp 2
    std::vector<model::ParamSet> parts;
    auto group = matrix_group_shapes(cfg, mesh, 0, parts);
    ASSERT_TRUE(group.ok()) << group.status();
    int64_t values = 0, staging = 0;
    for (const optim::MemberOptimizerBytes& m : optim::matrix_owner_bytes(*group, cfg.optim)) {
      values += m.value_copy;
      staging += m.staging;
    }
    EXPECT_EQ(values > 0, tp > 1);
    EXPECT_EQ(staging > 0, tp > 1);
  }
}

}  // namespace
}  // namespace memtrain::trainer
