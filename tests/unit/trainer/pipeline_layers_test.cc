// Which layers each pipeline stage holds: an even split by default, parallel.pp_layers when given (interleaved
// stages numbered chunk * pp + rank), and the plan of the pipeline rank that needs the most memory.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "trainer/pipeline.h"
#include "trainer/plan.h"

namespace memtrain::trainer {
namespace {

Config pipeline_config(int64_t layers, int64_t pp, int64_t chunks, std::vector<int64_t> pp_layers) {
  Config cfg;
  cfg.model.n_layer = layers;
  cfg.parallel.pp = pp;
  cfg.parallel.pp_chunks = chunks;
  cfg.parallel.pp_schedule = chunks > 1 ? "interleaved" : "1f1b";
  cfg.parallel.pp_layers = std::move(pp_layers);
  cfg.train.grad_accum = 4;
  return cfg;
}

// The block indices of the transformer.h.<l> parameters in `params`.
std::set<int> blocks_of(const model::ParamSet& params) {
  std::set<int> out;
  for (const auto& p : params.all()) {
    if (p->name.rfind("transformer.h.", 0) == 0) out.insert(std::stoi(p->name.substr(14)));
  }
  return out;
}

TEST(PipelineLayers, EvenSplitAndExplicitList) {
  const Config even = pipeline_config(8, 4, 1, {});
  for (int s = 0; s < 4; ++s) {
    const model::PipelineStage st = pipeline_stage(even, s, 4);
    EXPECT_EQ(st.first_layer, 2 * s);
    EXPECT_EQ(st.end_layer, 2 * s + 2);
    EXPECT_EQ(st.first, s == 0);
    EXPECT_EQ(st.last, s == 3);
  }
  const Config listed = pipeline_config(8, 4, 1, {0, 3, 4, 1});
  const int64_t begins[] = {0, 0, 3, 7}, ends[] = {0, 3, 7, 8};
  for (int s = 0; s < 4; ++s) {
    const model::PipelineStage st = pipeline_stage(listed, s, 4);
    EXPECT_EQ(st.first_layer, begins[s]) << s;
    EXPECT_EQ(st.end_layer, ends[s]) << s;
  }
}

// Interleaved: rank r holds stages r and pp + r; with the list, rank 0 holds the embeddings alone (stage 0) and
// block 3 (stage 2), rank 1 blocks 0-2 (stage 1) and 4-7 with the head (stage 3).
TEST(PipelineLayers, InterleavedRanksHoldTheirListedStages) {
  const Config cfg = pipeline_config(8, 2, 2, {0, 3, 1, 4});
  const std::set<int> want[2] = {{3}, {0, 1, 2, 4, 5, 6, 7}};
  for (int rank = 0; rank < 2; ++rank) {
    model::ParamSet params;
    auto models = create_rank_models(cfg, params, {}, {}, rank, 2);
    ASSERT_TRUE(models.ok()) << models.status();
    EXPECT_EQ(blocks_of(params), want[rank]) << "rank " << rank;
    EXPECT_EQ(params.find("transformer.wpe.weight") != nullptr, rank == 0);
    EXPECT_EQ(params.find("transformer.ln_f.weight") != nullptr, rank == 1);
  }
}

// `memtrain plan` shows the pipeline rank with the largest total: with every block on the last stage, that one.
TEST(PipelineLayers, PlanShowsTheLargestStage) {
  Config cfg = pipeline_config(4, 2, 1, {0, 4});
  auto largest = plan_memory_of_largest_stage(cfg, 2);
  ASSERT_TRUE(largest.ok()) << largest.status();
  ASSERT_EQ(largest->stage_totals.size(), 2u);
  for (int r = 0; r < 2; ++r) {
    auto plan = plan_memory(cfg, 2, r);
    ASSERT_TRUE(plan.ok());
    EXPECT_EQ(largest->stage_totals[r], plan->total);
  }
  EXPECT_EQ(largest->pp_rank, 1);
  EXPECT_GT(largest->stage_totals[1], largest->stage_totals[0]);
  cfg.parallel.pp_layers = {4, 0};
  auto first = plan_memory_of_largest_stage(cfg, 2);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->pp_rank, 0);
  EXPECT_NE(plan_table(cfg, *first).find("pipeline rank 0 of 2, the largest"), std::string::npos);
}

}  // namespace
}  // namespace memtrain::trainer
