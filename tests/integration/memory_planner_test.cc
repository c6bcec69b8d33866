// memory.activations = "auto" under memory.budget: for budgets from just under keep's peak down to near the
// smallest any plan meets, the run trains (the allocator, which enforces the budget, never refuses it), the
// measured peaks stay within the budget, and `memtrain plan` of the resolved config (output.dir/config.toml)
// predicts their sum within 5%. A budget below every plan stops with exit status 2 and names the smallest.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"
#include "tests/integration/cli.h"

namespace memtrain {
namespace {

constexpr char kCategories[][16] = {"parameters", "gradients", "optimizer_state", "activations",
                                    "communication", "workspace", "swap"};

class MemoryPlanner : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists("/usr/share/games/fortunes/fortunes")) GTEST_SKIP() << "fortunes not installed";
    dir_ = ::testing::TempDir() + "memtrain_planner_" + std::to_string(getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // configs/default.toml on 6 layers, batch 16 x 96.
  std::string sets(const std::string& out) const {
    return " --set model.n_layer=6 --set train.seq_len=96 --set offload.ssd_path=" + dir_ + " --set output.dir=" + out;
  }
  int64_t planned_total(const std::string& config, const std::string& extra) {
    auto p = testing::run_memtrain("plan " + config + extra + " --json", dir_);
    EXPECT_EQ(p.exit_code, 0) << p.err;
    return p.exit_code == 0 ? nlohmann::json::parse(p.out)["total"].get<int64_t>() : 0;
  }
  // Plans and trains under six budgets between the smallest plan's and keep's; returns the smallest plan's text.
  std::string expect_budgets_hold(const std::string& extra);
  std::string dir_;
};

std::string MemoryPlanner::expect_budgets_hold(const std::string& extra) {
  auto sets = [&](const std::string& out) { return this->sets(out) + extra; };
  const int64_t keep = planned_total("configs/default.toml", sets(dir_ + "/k"));
  EXPECT_GT(keep, 0);
  // The smallest plan, from the table an impossible budget prints ("total  <bytes>  <readable>").
  auto none = testing::run_memtrain("plan configs/default.toml" + sets(dir_ + "/k") +
                                        " --set memory.activations=auto --set memory.budget=1MiB", dir_);
  EXPECT_EQ(none.exit_code, 2) << none.err;
  const size_t at = none.err.find("\ntotal");
  if (at == std::string::npos) {
    ADD_FAILURE() << none.err;
    return "";
  }
  const int64_t smallest = std::stoll(none.err.substr(at + 6));
  EXPECT_LT(smallest, keep);
  // Six budgets spread between the smallest plan and keep's.
  for (double fraction : {0.97, 0.8, 0.6, 0.4, 0.2, 0.03}) {
    const int64_t budget = smallest + static_cast<int64_t>((keep - smallest) * fraction);
    const std::string out = dir_ + "/b" + std::to_string(budget);
    auto t = testing::run_memtrain("train configs/default.toml" + sets(out) +
                                       " --set memory.activations=auto --set memory.budget=" + std::to_string(budget) +
                                       " --set train.max_steps=3 --set train.log_interval=1 --set output.samples=0",
                                   dir_);
    EXPECT_EQ(t.exit_code, 0) << "budget " << budget << ": " << t.err;
    EXPECT_NE(t.out.find("memory.activations = auto: "), std::string::npos) << t.out;
    // The resolved config planned again, without the planner.
    const int64_t predicted = planned_total(out + "/config.toml", " --set output.dir=" + dir_ + "/p");
    int64_t measured = 0;
    for (absl::string_view line : absl::StrSplit(testing::slurp(out + "/metrics.jsonl"), '\n', absl::SkipEmpty())) {
      const auto m = nlohmann::json::parse(line.begin(), line.end());
      if (!m.contains("mem")) continue;
      int64_t sum = 0;
      for (const char* c : kCategories) sum += m["mem"][c].get<int64_t>();
      measured = std::max(measured, sum);
    }
    std::printf("budget %lld (keep's %lld, the smallest plan's %lld): predicted %lld, measured %lld; %s",
                static_cast<long long>(budget), static_cast<long long>(keep), static_cast<long long>(smallest),
                static_cast<long long>(predicted),
                static_cast<long long>(measured), t.out.substr(0, t.out.find('\n') + 1).c_str());
    EXPECT_LE(measured, budget);
    EXPECT_LE(std::abs(static_cast<double>(measured - predicted)), 0.05 * predicted);
  }
  return none.err;
}

TEST_F(MemoryPlanner, TrainingUnderEachBudgetStaysWithinItAndAsPlanned) { expect_budgets_hold(""); }

// At ZeRO-3 the planner may also put the parameter shard on the SSD; the smallest plan does.
TEST_F(MemoryPlanner, AtZero3TheShardMayGoToTheSsd) {
  const std::string smallest = expect_budgets_hold(" --set zero.stage=3");
  EXPECT_NE(smallest.find("the parameter shard on the SSD"), std::string::npos) << smallest;
}

TEST_F(MemoryPlanner, AnImpossibleBudgetNamesTheSmallestPlan) {
  auto t = testing::run_memtrain("train configs/default.toml" + sets(dir_ + "/x") +
                                     " --set memory.activations=auto --set memory.budget=20MiB",
                                 dir_);
  EXPECT_EQ(t.exit_code, 2) << t.err;
  EXPECT_NE(t.err.find("error: memory.budget: no plan fits 20.00 MiB per rank; the smallest needs "), std::string::npos)
      << t.err;
  EXPECT_NE(t.err.find("activations"), std::string::npos) << t.err;  // the breakdown
  auto no_budget = testing::run_memtrain("plan configs/default.toml --set memory.activations=auto", dir_);
  EXPECT_EQ(no_budget.exit_code, 2);
  EXPECT_NE(no_budget.err.find("memory.activations: \"auto\" chooses policies that fit memory.budget"),
            std::string::npos)
      << no_budget.err;
}

}  // namespace
}  // namespace memtrain
