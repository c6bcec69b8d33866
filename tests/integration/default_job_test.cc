// The README's default job end to end through the binary (shortened with --set), then `eval` and `sample` on the
// weights it saved, and the metrics.jsonl contract.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "tests/integration/cli.h"

namespace memtrain {
namespace {

std::string scratch(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "memtrain_" + name + "_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

TEST(DefaultJob, TrainsEvaluatesSavesAndSamples) {
  if (!std::filesystem::exists("/usr/share/games/fortunes/fortunes")) GTEST_SKIP() << "fortunes not installed";
  const std::string dir = scratch("default");
  const std::string out = dir + "/run";
  const std::string common = " --set output.dir=" + out + " --set model.n_layer=2 --set model.n_embd=64";
  auto r = testing::run_memtrain("train configs/default.toml --set train.max_steps=30 --set train.log_interval=10"
                                 " --set train.eval_interval=10 --set train.eval_batches=4 --set output.sample_tokens=40" +
                                     common,
                                 dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("step     10/30 | loss"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--- sample 3 ---"), std::string::npos) << r.out;
  EXPECT_TRUE(std::filesystem::exists(out + "/model.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(out + "/config.toml"));

  // metrics.jsonl: every line is JSON; step lines carry the contract's keys, eval lines val_loss.
  double last_val = -1;
  int step_lines = 0;
  for (absl::string_view line : absl::StrSplit(testing::slurp(out + "/metrics.jsonl"), '\n', absl::SkipEmpty())) {
    auto j = nlohmann::json::parse(line.begin(), line.end());
    if (j.contains("val_loss")) {
      last_val = j["val_loss"].get<double>();
      continue;
    }
    ++step_lines;
    for (const char* key : {"step", "loss", "lr", "grad_norm", "tokens_per_s", "mem"}) EXPECT_TRUE(j.contains(key)) << key;
    EXPECT_GT(j["mem"]["parameters"].get<int64_t>(), 0);
    EXPECT_GT(j["mem"]["activations"].get<int64_t>(), 0);
  }
  EXPECT_EQ(step_lines, 3);
  ASSERT_GT(last_val, 0);

  // eval recomputes the final validation loss from the saved weights: the same number.
  auto e = testing::run_memtrain("eval configs/default.toml --set train.eval_batches=4" + common, dir);
  ASSERT_EQ(e.exit_code, 0) << e.err;
  double val = 0;
  ASSERT_TRUE(absl::SimpleAtod(absl::StripAsciiWhitespace(e.out.substr(e.out.find("val_loss") + 8)), &val)) << e.out;
  EXPECT_NEAR(val, last_val, 1e-5 * last_val);

  auto s = testing::run_memtrain("sample configs/default.toml --set output.samples=1 --set output.sample_tokens=20" + common, dir);
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_NE(s.out.find("--- sample 1 ---"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace memtrain
