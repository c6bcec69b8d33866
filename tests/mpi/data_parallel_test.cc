// Data parallelism and ZeRO-1/2/3 (and hpZ) on dp = the world size, against a single process that trains the
// same global batch as dp micro-batches. The engine sums ranks' gradients in rank order and one process sums its
// micro-batches in the same order, so the tolerance is none: loss curves and final weights must be bitwise equal
// (the bound is 1e-5; equality is the stronger test DESIGN.md asks for first). With 8-bit AdamW too: a
// rank's piece of a tensor starts on one of the tensor's 256-element blocks, so its codes are the single process's.
// Also: model-state bytes per rank against the ZeRO formulas, and mesh errors before any allocation.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/memory.h"
#include "data/prepare.h"
#include "optim/adamw.h"
#include "optim/matrix_owners.h"
#include "parallel/local_communicator.h"
#include "tests/mpi/training_fixture.h"
#include "trainer/config.h"
#include "trainer/distributed.h"
#include "trainer/session.h"
#include "trainer/train_loop.h"

namespace memtrain {
namespace {
using parallel::testing::EngineSetup;
using parallel::testing::set_up;
using parallel::testing::shared_dir;
using parallel::testing::single_process_run;
using parallel::testing::slurp;
using parallel::testing::tiny_config;
using parallel::testing::world;

struct Case {
  std::string arch;
  int stage;
  int hpz;  // zero.hpz_partition_size
  std::string optim = "adamw";
  int lisa = 0;  // optim.lisa_layers
  int sltrain = 0;  // model.sltrain_rank
};

std::string case_name(const Case& c) {
  return c.arch + "_zero" + std::to_string(c.stage) + (c.hpz > 1 ? "_hpz" + std::to_string(c.hpz) : "") +
         (c.optim != "adamw" ? "_" + c.optim : "") + (c.lisa > 0 ? "_lisa" + std::to_string(c.lisa) : "") +
         (c.sltrain > 0 ? "_sltrain" + std::to_string(c.sltrain) : "");
}

class MeshVsSingleProcess : public ::testing::TestWithParam<Case> {};

TEST_P(MeshVsSingleProcess, LossCurveAndWeightsAreBitwiseEqual) {
  const Case c = GetParam();
  const int d = world().size();
  if (c.hpz > 1 && d <= c.hpz) GTEST_SKIP() << "hpZ needs more dp ranks than the group size";
  // The other optimizers' sharding (matrix owners, 8-bit blocks) is that of any dp; 8 ranks run the stages with AdamW.
  if (d == 8 && (c.optim != "adamw" || c.lisa > 0)) GTEST_SKIP() << "covered by the runs on 2 and 4 ranks";
  const std::string name = case_name(c);
  const std::string mesh_out = shared_dir() + "/mesh_" + name;
  // One random direction a step learns more slowly than a gradient: a larger step, a smaller expectation.
  const bool zo = c.optim == "zo_sgd";
  // The optimizer's settings, the same in both runs.
  std::vector<std::string> optim = {"optim.name=" + c.optim, "optim.update_proj_gap=20",
                                    "optim.lisa_layers=" + std::to_string(c.lisa), "optim.lisa_interval=7",
                                    "model.sltrain_rank=" + std::to_string(c.sltrain)};
  if (zo) optim.push_back("optim.lr=1e-2");
  std::vector<std::string> mesh_sets = {"zero.stage=" + std::to_string(c.stage),
                                        "zero.hpz_partition_size=" + std::to_string(c.hpz)};
  mesh_sets.insert(mesh_sets.end(), optim.begin(), optim.end());
  auto mesh = trainer::run_training(tiny_config(c.arch, mesh_out, mesh_sets), world().comm(), 1, /*quiet=*/true);
  ASSERT_TRUE(mesh.ok()) << mesh.status();

  // The reference: one process, the same global batch as d micro-batches of the same size, replicated states.
  const std::string single_out = shared_dir() + "/single_" + name;
  std::vector<std::string> single_sets = {"train.grad_accum=" + std::to_string(d)};
  single_sets.insert(single_sets.end(), optim.begin(), optim.end());
  auto single = single_process_run(tiny_config(c.arch, single_out, single_sets));
  ASSERT_TRUE(single.ok()) << single.status();

  ASSERT_EQ(mesh->losses.size(), 50u);
  ASSERT_EQ(single->losses.size(), 50u);
  for (size_t i = 0; i < mesh->losses.size(); ++i) EXPECT_EQ(mesh->losses[i], single->losses[i]) << "step " << i + 1;
  EXPECT_EQ(mesh->final_val_loss, single->final_val_loss);
  if (world().rank() == 0) {
    // Safetensors files with the same names, shapes and bytes: the final parameters are identical.
    EXPECT_TRUE(slurp(mesh_out + "/model.safetensors") == slurp(single_out + "/model.safetensors"));
  }
  EXPECT_LT(mesh->losses.back(), mesh->losses.front() - (zo ? 0.02 : 0.5)) << "the runs should learn something";
}

INSTANTIATE_TEST_SUITE_P(Stages, MeshVsSingleProcess,
                         ::testing::Values(Case{"gpt2", 0, 1}, Case{"gpt2", 1, 1}, Case{"gpt2", 2, 1},
                                           Case{"gpt2", 3, 1}, Case{"gpt2", 3, 2}, Case{"llama", 0, 1},
                                           Case{"llama", 3, 1}, Case{"llama", 3, 2},
                                           Case{"gpt2", 1, 1, "adamw8bit"}, Case{"llama", 2, 1, "adamw8bit"},
                                           Case{"gpt2", 3, 1, "adamw8bit"},
                                           // Whole matrices on owner ranks (optim/matrix_owners).
                                           Case{"gpt2", 1, 1, "galore_adamw"}, Case{"llama", 2, 1, "galore_adamw"},
                                           Case{"gpt2", 2, 1, "apollo"}, Case{"llama", 1, 1, "apollo"},
                                           Case{"llama", 2, 1, "adafactor"}, Case{"gpt2", 1, 1, "adafactor"},
                                           Case{"llama", 1, 1, "apollo_mini"}, Case{"gpt2", 2, 1, "apollo_mini"},
                                           Case{"gpt2", 1, 1, "smmf"}, Case{"llama", 2, 1, "smmf"},
                                           Case{"gpt2", 1, 1, "coap_adamw"}, Case{"llama", 2, 1, "coap_adamw"},
                                           // LISA: every rank draws the same blocks; ZeRO shards their state.
                                           Case{"gpt2", 0, 1, "adamw", 1}, Case{"llama", 2, 1, "adamw8bit", 1},
                                           // Forwards only: every rank draws the step's direction itself.
                                           Case{"gpt2", 0, 1, "zo_sgd"}, Case{"gpt2", 1, 1, "zo_sgd"},
                                           Case{"llama", 2, 1, "zo_sgd"}, Case{"llama", 3, 1, "zo_sgd"},
                                           Case{"gpt2", 1, 1, "adamw", 0, 4}, Case{"llama", 3, 1, "adamw", 0, 4}),
                         [](const auto& info) { return case_name(info.param); });

// Two micro-batches per rank: a rank sums its own micro-batches before the ranks are summed, an order one process
// cannot copy, so the curves differ by rounding. DESIGN.md's rule: the noise floor is the difference between two
// single-process runs of the same global batch split differently (2d micro-batches of B rows, d of 2B); the mesh
// must stay within 2x that floor of the first, and within 1e-4 relative.
TEST(Accumulation, MeshWithMicroBatchesStaysWithinTheNoiseFloor) {
  const int d = world().size();
  auto single = [&](const std::string& name, int64_t accum, int64_t batch) {
    auto r = single_process_run(tiny_config(
        "gpt2", shared_dir() + "/" + name,
        {"train.grad_accum=" + std::to_string(accum), "train.batch_size=" + std::to_string(batch)}));
    MEMTRAIN_CHECK_OK(r.status());
    return r->losses;
  };
  const std::vector<double> a = single("accum_small", 2 * d, 2), b = single("accum_big", d, 4);
  double floor = 0;
  for (size_t i = 0; i < a.size(); ++i) floor = std::max(floor, std::fabs(a[i] - b[i]));
  for (int stage : {0, 2}) {
    auto mesh = trainer::run_training(
        tiny_config("gpt2", shared_dir() + "/accum_mesh" + std::to_string(stage),
                    {"train.grad_accum=2", "zero.stage=" + std::to_string(stage)}),
        world().comm(), 1, /*quiet=*/true);
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    double worst = 0, worst_rel = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      worst = std::max(worst, std::fabs(mesh->losses[i] - a[i]));
      worst_rel = std::max(worst_rel, std::fabs(mesh->losses[i] - a[i]) / a[i]);
    }
    EXPECT_LE(worst, 2 * floor) << "stage " << stage;
    EXPECT_LE(worst_rel, 1e-4) << "stage " << stage;
    if (world().rank() == 0)
      std::printf("dp=%d stage %d, 2 micro-batches per rank: max |dloss| %.3g, noise floor %.3g\n", d, stage, worst,
                  floor);
  }
}

// ZeRO++ qwZ: stage-3 gathers carry int8 values with a scale per 256, so forward and backward see weights off by
// at most half a quantization step (0.4% of a block's largest value). Tolerance, chosen before running: every
// step's loss within 2% of the exact single-process loss; and not bitwise equal, or the quantization did not run.
TEST(Qwz, FollowsTheSingleProcessCurveClosely) {
  const int d = world().size();
  const std::string mesh_out = shared_dir() + "/mesh_qwz";
  auto mesh = trainer::run_training(tiny_config("gpt2", mesh_out, {"zero.stage=3", "zero.quantized_weights=true"}),
                                    world().comm(), 1, /*quiet=*/true);
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  const std::string single_out = shared_dir() + "/single_qwz";
  auto single = single_process_run(tiny_config("gpt2", single_out, {"train.grad_accum=" + std::to_string(d)}));
  ASSERT_TRUE(single.ok()) << single.status();
  ASSERT_EQ(mesh->losses.size(), single->losses.size());
  double worst = 0;
  for (size_t i = 0; i < mesh->losses.size(); ++i)
    worst = std::max(worst, std::fabs(mesh->losses[i] - single->losses[i]) / single->losses[i]);
  EXPECT_LE(worst, 2e-2);
  EXPECT_GT(worst, 0.0) << "bitwise equal: were the gathers quantized?";
  if (world().rank() == 0) std::printf("qwZ at dp=%d: largest relative loss difference over 50 steps %.2e\n", d, worst);
}

// Records the dp communicator's byte counter at every hook call, then forwards to the engine.
class HookSpy : public parallel::UnitHooks {
 public:
  HookSpy(parallel::UnitHooks& inner, parallel::Communicator& dp) : inner_(inner), dp_(dp) {}
  absl::Status acquire(int unit, parallel::UnitUse use) override {
    if (use != parallel::UnitUse::kValues) log.push_back({unit, dp_.bytes_sent()});
    return inner_.acquire(unit, use);
  }
  absl::Status release(int unit, parallel::UnitUse use) override { return inner_.release(unit, use); }
  absl::Status grads_ready(int unit) override { return inner_.grads_ready(unit); }
  std::vector<std::pair<int, int64_t>> log;  // (unit, bytes sent so far) at each acquire for gradients

 private:
  parallel::UnitHooks& inner_;
  parallel::Communicator& dp_;
};

// DDP with 2 micro-batches per step and one-layer buckets: nothing is sent during the first micro-batch, and in the
// second the first buckets go out while backward still has layers to run (their bytes are counted when posted).
TEST(Ddp, ReducesDuringBackwardAndNotOnAccumulationMicroBatches) {
  trainer::Config cfg = tiny_config("gpt2", shared_dir() + "/ddp_overlap", {"train.grad_accum=2",
                                                                           "parallel.bucket_mb=0.0001"});
  EngineSetup s = set_up(cfg);
  parallel::DataParallel* engine = s.engine.get();
  HookSpy spy(*engine, s.run.dp());
  model::Model& model = *s.bundle->model;
  model.set_unit_hooks(&spy);
  auto tokens = Tensor::zeros({2, 32}, DType::kI32, MemCategory::kActivations);
  ASSERT_TRUE(tokens.ok());
  std::vector<int64_t> sent_after_micro;
  for (int64_t m = 0; m < 2; ++m) {
    ASSERT_TRUE(engine->begin_micro_batch(m).ok());
    spy.log.clear();
    model::ActivationStore store;
    ASSERT_TRUE(model.forward(*tokens, *tokens, 1e-3f, store).ok());
    ASSERT_TRUE(model.backward(store).ok());
    sent_after_micro.push_back(s.run.dp().bytes_sent());
  }
  ASSERT_TRUE(engine->finish_gradients().ok());
  EXPECT_EQ(sent_after_micro[0], 0) << "communication on an accumulation micro-batch";
  // Second micro-batch: backward acquires units L+1, L, ..., 1 and then 0; by the time it reaches unit 1, the
  // buckets of the units above it are already posted.
  ASSERT_FALSE(spy.log.empty());
  const auto at_unit_1 = std::find_if(spy.log.begin(), spy.log.end(), [](const auto& e) { return e.first == 1; });
  ASSERT_NE(at_unit_1, spy.log.end());
  EXPECT_GT(at_unit_1->second, 0) << "no reduction started before backward reached the first block";
  EXPECT_GT(sent_after_micro[1], at_unit_1->second) << "the last buckets are sent after the first";
}

// Model-state bytes per rank right after setup, as the allocator counts them, against the ZeRO paper's fp32
// formulas: parameters 4 psi, gradients 4 psi, Adam 8 psi, each divided by dp where the stage shards it. Padding
// of each layer to a multiple of dp * 256 elements is the only allowed difference (5%).
TEST(ZeroFormulas, ModelStateBytesPerRank) {
  const int d = world().size();
  for (int stage = 0; stage <= 3; ++stage) {
    SCOPED_TRACE("stage " + std::to_string(stage));
    // configs/default.toml's model (3.2M parameters), without its data.
    trainer::Config cfg = tiny_config("gpt2", shared_dir() + "/formulas", {"model.n_layer=4", "model.n_embd=256",
                                                                          "model.block_size=128"});
    cfg.zero.stage = stage;
    const MemorySnapshot before = MemoryTracker::host().snapshot();
    {
      EngineSetup s = set_up(cfg);
      auto opt = trainer::create_sharded_optimizer(cfg, s.run, *s.bundle, *s.engine);
      ASSERT_TRUE(opt.ok()) << opt.status();

      const MemorySnapshot now = MemoryTracker::host().snapshot();
      const double psi = static_cast<double>(s.bundle->params.numel());
      auto measured = [&](MemCategory c) {
        const int i = static_cast<int>(c);
        return static_cast<double>(now.current[i] - before.current[i]);
      };
      const double expect_params = 4 * psi / (stage >= 3 ? d : 1), expect_grads = 4 * psi / (stage >= 2 ? d : 1),
                   expect_optim = 8 * psi / (stage >= 1 ? d : 1);
      EXPECT_NEAR(measured(MemCategory::kParameters), expect_params, 0.05 * expect_params);
      EXPECT_NEAR(measured(MemCategory::kGradients), expect_grads, 0.05 * expect_grads);
      EXPECT_NEAR(measured(MemCategory::kOptimizerState), expect_optim, 0.05 * expect_optim);
      if (world().rank() == 0) {
        std::printf("dp=%d stage %d: params %.0f (formula %.0f), grads %.0f (%.0f), adam %.0f (%.0f) bytes\n", d, stage,
                    measured(MemCategory::kParameters), expect_params, measured(MemCategory::kGradients), expect_grads,
                    measured(MemCategory::kOptimizerState), expect_optim);
      }
    }
  }
}

// Optimizers that need whole matrices under ZeRO-1/2, with and without tensor parallelism: each rank holds the state
// of what it updates (its pieces of other tensors, the matrices it owns), a copy of its matrices' gradients and
// with tp of their values and a receive area, as optim::matrix_owner_bytes (the plan's figure) says; over all ranks
// each matrix is owned once, and without tp (or with Adafactor, which owns every tensor) the state adds up to the
// single-process state exactly.
TEST(MatrixOwners, EachRankHoldsThePlannedShareOfTheState) {
  const int world_size = world().size();
  for (int tp : {1, 2}) {
    for (const std::string optim : {"galore_adamw", "adafactor"}) {
      for (int stage : {1, 2}) {
        SCOPED_TRACE(optim + " stage " + std::to_string(stage) + " tp " + std::to_string(tp));
        trainer::Config cfg = tiny_config("gpt2", shared_dir() + "/owners", {"optim.name=" + optim, "optim.rank=8",
                                                                            "parallel.tp=" + std::to_string(tp),
                                                                            "parallel.dp=-1"});
        cfg.zero.stage = stage;
        const MemorySnapshot before = MemoryTracker::host().snapshot();
        EngineSetup s = set_up(cfg);
        const MemorySnapshot engine_only = MemoryTracker::host().snapshot();
        auto opt = trainer::create_sharded_optimizer(cfg, s.run, *s.bundle, *s.engine);
        ASSERT_TRUE(opt.ok()) << opt.status();
        const MemorySnapshot now = MemoryTracker::host().snapshot();
        auto grown = [](const MemorySnapshot& a, const MemorySnapshot& b, MemCategory c) {
          return b.current[static_cast<int>(c)] - a.current[static_cast<int>(c)];
        };
        std::vector<model::ParamSet> parts;
        auto group = trainer::matrix_group_shapes(cfg, s.run.mesh.shape(), 0, parts);
        ASSERT_TRUE(group.ok()) << group.status();
        const std::vector<optim::MemberOptimizerBytes> plan = optim::matrix_owner_bytes(*group, cfg.optim);
        ASSERT_EQ(static_cast<int>(plan.size()), world_size);
        const optim::MemberOptimizerBytes& mine = plan[world().rank()];  // member q * tp + t is world rank here
        EXPECT_EQ(grown(before, now, MemCategory::kOptimizerState), mine.state);
        EXPECT_EQ(grown(engine_only, now, MemCategory::kGradients), mine.gradient_copy);
        EXPECT_EQ(grown(engine_only, now, MemCategory::kParameters), mine.value_copy);
        EXPECT_EQ(grown(engine_only, now, MemCategory::kCommunication), mine.staging);
        int64_t single = 0, total = 0, whole = 0, copies = 0, values = 0;
        int owners = 0;
        for (const auto& p : parts[0].all()) {  // shapes: the global shape is p->shape
          auto g = std::make_unique<model::Param>();
          g->name = p->name;
          g->shape = g->local_shape = p->shape;
          g->kind = p->kind;
          g->init = p->init;
          g->unit = p->unit;
          single += optim::optimizer_state_bytes({g.get(), nullptr, nullptr, shape_numel(p->shape)}, cfg.optim);
          if (optim::needs_whole_tensor(*p, cfg.optim)) whole += 4 * shape_numel(p->shape);
        }
        for (const auto& r : plan) {
          total += r.state;
          copies += r.gradient_copy;
          values += r.value_copy;
          owners += r.gradient_copy > 0;
        }
        if (tp == 1 || optim == "adafactor") {
          EXPECT_EQ(total, single);
        }
        EXPECT_EQ(copies, whole);  // each matrix on one owner
        EXPECT_EQ(values, tp > 1 ? whole : 0);
        EXPECT_GT(owners, 1) << "the matrices should spread over the " << world_size << " ranks";
      }
    }
  }
}

TEST(MeshErrors, ComeBeforeAnyAllocation) {
  MemoryTracker::host().reset_peaks();
  const MemorySnapshot before = MemoryTracker::host().snapshot();
  const std::string out = shared_dir() + "/errors";
  const std::string dp = "parallel.dp=" + std::to_string(world().size() + 1);
  auto wrong_size = trainer::run_training(tiny_config("gpt2", out, {dp}), world().comm(), 1, true);
  ASSERT_FALSE(wrong_size.ok());
  EXPECT_NE(wrong_size.status().message().find("must equal the world size"), std::string::npos) << wrong_size.status();
  auto heads = trainer::run_training(tiny_config("gpt2", out, {"parallel.tp=3", "parallel.dp=-1"}), world().comm(), 1,
                                     true);
  ASSERT_FALSE(heads.ok());
  // With 2, 4 or 8 ranks, tp = 3 either does not divide the world or does not divide the 4 heads.
  EXPECT_NE(heads.status().message().find("parallel."), std::string::npos) << heads.status();
  const MemorySnapshot after = MemoryTracker::host().snapshot();
  for (int c = 0; c < kNumMemCategories; ++c) EXPECT_EQ(after.peak[c] - before.current[c], 0) << c;
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace memtrain
