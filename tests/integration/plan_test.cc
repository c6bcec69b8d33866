// `memtrain plan --json` against the peaks the allocator measures in a real run of the same config (metrics.jsonl's
// `mem`): within 5% per category, the bound (the prediction is exact today; the margin is for later
// features whose peaks depend on timing).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"
#include "tests/integration/cli.h"

namespace memtrain {
namespace {

// Plans `config` with `sets` (" --set k=v ..."), trains 3 steps of it and compares every category.
void expect_plan_matches_training(const std::string& config, const std::string& case_sets) {
  if (!std::filesystem::exists("/usr/share/games/fortunes/fortunes")) GTEST_SKIP() << "fortunes not installed";
  const std::string dir = ::testing::TempDir() + "memtrain_plan_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string sets = " --set train.batch_size=5 --set train.seq_len=96" + case_sets +
                           " --set output.dir=" + dir + "/out";
  auto p = testing::run_memtrain("plan " + config + sets + " --json", dir);
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const auto plan = nlohmann::json::parse(p.out);
  auto t = testing::run_memtrain("train " + config + sets +
                                     " --set train.max_steps=3 --set train.log_interval=1 --set output.samples=0",
                                 dir);
  ASSERT_EQ(t.exit_code, 0) << t.err;
  int lines = 0;
  for (absl::string_view line : absl::StrSplit(testing::slurp(dir + "/out/metrics.jsonl"), '\n', absl::SkipEmpty())) {
    const auto m = nlohmann::json::parse(line.begin(), line.end());
    if (!m.contains("mem")) continue;
    ++lines;
    for (const char* c : {"parameters", "gradients", "optimizer_state", "activations", "communication", "workspace",
                          "swap"}) {
      const double measured = m["mem"][c].get<double>(), predicted = plan[c].get<double>();
      EXPECT_LE(std::abs(measured - predicted), 0.05 * predicted)
          << config << case_sets << " step " << m["step"] << " " << c << ": measured " << measured << ", plan "
          << predicted;
    }
  }
  EXPECT_EQ(lines, 3);
  std::filesystem::remove_all(dir);
}

// (config, zero.stage, optim.name): one process, where every stage's peaks are deterministic (no reduction in
// flight).
class Plan : public ::testing::TestWithParam<std::tuple<std::string, int, std::string>> {};

TEST_P(Plan, PredictionMatchesTheMeasuredPeaks) {
  const auto& [config, stage, optimizer] = GetParam();
  expect_plan_matches_training(config, " --set model.n_layer=2 --set zero.stage=" + std::to_string(stage) +
                                           " --set optim.name=" + optimizer);
}

std::string plan_case_name(const ::testing::TestParamInfo<Plan::ParamType>& info) {
  return std::string(std::get<0>(info.param) == "configs/default.toml" ? "gpt2" : "llama") + "_zero" +
         std::to_string(std::get<1>(info.param)) + "_" + std::get<2>(info.param);
}

INSTANTIATE_TEST_SUITE_P(Configs, Plan,
                         ::testing::Combine(::testing::Values("configs/default.toml", "configs/llama_tiny.toml"),
                                            ::testing::Values(0, 1, 2, 3), ::testing::Values("adamw", "adamw8bit")),
                         plan_case_name);
// Optimizers that need whole matrices: ZeRO-3 is a config error for them.
INSTANTIATE_TEST_SUITE_P(WholeMatrices, Plan,
                         ::testing::Combine(::testing::Values("configs/default.toml", "configs/llama_tiny.toml"),
                                            ::testing::Values(0, 2),
                                            ::testing::Values("galore_adamw", "apollo", "coap_adamw")),
                         plan_case_name);

// Zeroth-order training: no gradients, no state, a forward's activations; the values as every stage keeps them.
INSTANTIATE_TEST_SUITE_P(ZerothOrder, Plan,
                         ::testing::Combine(::testing::Values("configs/default.toml", "configs/llama_tiny.toml"),
                                            ::testing::Values(0, 1, 2, 3), ::testing::Values("zo_sgd")),
                         plan_case_name);

// SLTrain: factored projections (values, their int32 positions, A and B), the workspace of the sparse part.
INSTANTIATE_TEST_SUITE_P(SlTrain, Plan,
                         ::testing::Combine(::testing::Values("configs/default.toml --set model.sltrain_rank=8",
                                                              "configs/llama_tiny.toml --set model.sltrain_rank=8"),
                                            ::testing::Values(0, 3), ::testing::Values("adamw")),
                         [](const ::testing::TestParamInfo<Plan::ParamType>& info) {
                           const bool gpt2 = std::get<0>(info.param).starts_with("configs/default");
                           return std::string(gpt2 ? "gpt2" : "llama") + "_zero" +
                                  std::to_string(std::get<1>(info.param));
                         });

// LISA: the always-trained tensors' state and two of the four blocks', whichever are drawn.
TEST(PlanLisa, PredictionMatchesTheMeasuredPeaks) {
  for (const char* config : {"configs/default.toml", "configs/llama_tiny.toml"}) {
    expect_plan_matches_training(config, " --set model.n_layer=4 --set optim.lisa_layers=2 --set optim.lisa_interval=2");
  }
}

// (config, memory.activations, memory.recompute_segment) on 5 layers: swapping waits at block boundaries, so its
// peaks do not depend on how fast the tier is.
class PlanActivations : public ::testing::TestWithParam<std::tuple<std::string, std::string, int>> {};

TEST_P(PlanActivations, PredictionMatchesTheMeasuredPeaks) {
  const auto& [config, policy, segment] = GetParam();
  expect_plan_matches_training(config, " --set model.n_layer=5 --set memory.activations=" + policy +
                                           " --set memory.recompute_segment=" + std::to_string(segment) +
                                           " --set offload.ssd_path=" + ::testing::TempDir());
}

INSTANTIATE_TEST_SUITE_P(
    Recompute, PlanActivations,
    ::testing::Combine(::testing::Values("configs/default.toml", "configs/llama_tiny.toml"),
                       ::testing::Values("recompute", "keep,recompute,recompute,keep,recompute", "swap_host",
                                         "swap_ssd", "swap_ssd,recompute,swap_host,keep,swap_ssd", "compress",
                                         "compress,recompute,keep,swap_ssd,compress", "recompute_attention"),
                       ::testing::Values(1, 2)),
    [](const auto& info) {
      std::string policy = std::get<1>(info.param);
      if (policy.find(',') != std::string::npos) {
        policy = policy.find("compress") != std::string::npos ? "mixed_compress"
                 : policy.find("swap") != std::string::npos   ? "mixed_swap"
                                                              : "mixed";
      }
      return std::string(std::get<0>(info.param) == "configs/default.toml" ? "gpt2" : "llama") + "_" + policy +
             "_segment" + std::to_string(std::get<2>(info.param));
    });

// StreamBP and token-wise swap (stream_swap_host/ssd): the blocks' inputs and one chunk's tensors, the swapped
// chunks' copies in `swap` (host) or the swap file's staging buffers (SSD).
TEST(PlanStream, PredictionMatchesTheMeasuredPeaks) {
  for (const char* config : {"configs/default.toml", "configs/llama_tiny.toml"}) {
    for (const char* sets : {" --set memory.activations=stream",
                             " --set memory.activations=stream_swap_host --set memory.stream_swap_fraction=0.5",
                             " --set memory.activations=stream_swap_ssd,keep,stream_swap_host,recompute,stream"}) {
      SCOPED_TRACE(std::string(config) + sets);
      expect_plan_matches_training(config, std::string(" --set model.n_layer=5 --set memory.stream_chunk=16") + sets +
                                               " --set offload.ssd_path=" + ::testing::TempDir());
    }
  }
}

// AdamW's moments on disk: three groups of them in memory, plus the swap file's staging buffers.
TEST(PlanOptimizerOffload, PredictionMatchesTheMeasuredPeaks) {
  for (int stage : {0, 2}) {
    expect_plan_matches_training("configs/default.toml", " --set model.n_layer=2 --set offload.optimizer=ssd"
                                                         " --set offload.ssd_path=" + ::testing::TempDir() +
                                                         " --set zero.stage=" + std::to_string(stage));
  }
}

// ZeRO-3's shard in a tier (offload.parameters): a few units' slices in memory at a time, the host tier's copies in
// `swap`, the SSD tier's staging buffers.
class PlanParameterOffload : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(PlanParameterOffload, PredictionMatchesTheMeasuredPeaks) {
  const auto& [config, sets] = GetParam();
  expect_plan_matches_training(config, " --set model.n_layer=3 --set zero.stage=3 --set offload.ssd_path=" +
                                           ::testing::TempDir() + sets);
}

INSTANTIATE_TEST_SUITE_P(
    Tiers, PlanParameterOffload,
    ::testing::Combine(::testing::Values("configs/default.toml", "configs/llama_tiny.toml"),
                       ::testing::Values(" --set offload.parameters=host",
                                         " --set offload.parameters=ssd --set optim.name=adamw8bit",
                                         " --set offload.parameters=ssd --set offload.optimizer=ssd")),
    [](const auto& info) {
      const std::string& sets = std::get<1>(info.param);
      return std::string(std::get<0>(info.param) == "configs/default.toml" ? "gpt2" : "llama") +
             (sets.find("host") != std::string::npos       ? "_host"
              : sets.find("adamw8bit") != std::string::npos ? "_ssd_adamw8bit"
                                                            : "_ssd_optimizer_ssd");
    });

TEST(PlanCli, SaysWhetherItFitsTheBudget) {
  const std::string dir = ::testing::TempDir() + "memtrain_plan_budget_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  auto small = testing::run_memtrain("plan configs/default.toml --set memory.budget=10MiB", dir);
  ASSERT_EQ(small.exit_code, 0) << small.err;
  EXPECT_NE(small.out.find("does not fit memory.budget = 10.00 MiB"), std::string::npos) << small.out;
  auto big = testing::run_memtrain("plan configs/default.toml --json --set memory.budget=1GiB", dir);
  EXPECT_TRUE(nlohmann::json::parse(big.out)["fits"].get<bool>()) << big.out;
  EXPECT_EQ(testing::run_memtrain("plan configs/default.toml --set model.n_head=3", dir).exit_code, 2);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace memtrain
