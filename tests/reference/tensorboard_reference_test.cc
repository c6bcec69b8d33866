// output.tensorboard = true: TensorBoard's own reader (tests/reference/tensorboard_read.py, the `tensorboard`
// package in the reference venv) reads every frame of the event files of a run and of its resumed continuation
// (both CRCs checked, each frame parsed as a tensorflow.Event), and finds metrics.jsonl's losses, validation
// losses and memory peaks at their steps, rounded to float as simple values are. Skipped when the venv lacks it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"
#include "tests/integration/cli.h"
#include "tests/reference/pyref.h"
#include "trainer/tensorboard.h"

namespace memtrain {
namespace {

// Check values of CRC-32C: RFC 3720's (iSCSI) and the common "123456789" one.
TEST(Crc32c, MatchesThePublishedCheckValues) {
  EXPECT_EQ(trainer::crc32c("123456789", 9), 0xE3069283u);
  const std::string zeros(32, '\0'), ones(32, '\xFF');
  EXPECT_EQ(trainer::crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(trainer::crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  std::string ascending(32, '\0');
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<char>(i);
  EXPECT_EQ(trainer::crc32c(ascending.data(), ascending.size()), 0x46DD794Eu);
}

// (tag, step) -> value, from the reader's lines starting with `kind`.
using Scalars = std::map<std::pair<std::string, int64_t>, double>;

TEST(TensorBoardReference, ReadsEveryScalarOfARunAndItsResumptionAsMetricsJsonlHasThem) {
  if (!testing::reference_python_has("tensorboard")) GTEST_SKIP() << "the reference venv has no tensorboard package";
  const std::string dir = ::testing::TempDir() + "memtrain_tensorboard_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string sets =
      " --set model.n_layer=2 --set model.n_embd=64 --set train.log_interval=2 --set train.eval_interval=4"
      " --set train.eval_batches=2 --set train.checkpoint_interval=4 --set output.samples=0"
      " --set output.tensorboard=true --set output.dir=" + dir + "/run";
  auto first = testing::run_memtrain("train configs/default.toml --set train.max_steps=8" + sets, dir);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  auto rest = testing::run_memtrain(
      "train configs/default.toml --set train.max_steps=12 --set train.resume=auto" + sets, dir);
  ASSERT_EQ(rest.exit_code, 0) << rest.err;

  const std::string listing = dir + "/read.txt";
  ASSERT_EQ(testing::run_reference_script("tensorboard_read.py", dir + "/run/tensorboard >" + listing), 0);
  std::istringstream lines(testing::slurp(listing));
  std::vector<std::string> files;
  Scalars stored, shown;
  for (std::string line; std::getline(lines, line);) {
    const std::vector<std::string> w = absl::StrSplit(line, ' ');
    if (w[0] == "file") {
      ASSERT_EQ(w.size(), 3u) << line;
      EXPECT_EQ(w[2], "brain.Event:2") << line;
      files.push_back(w[1]);
    } else if (w[0] == "scalar" || w[0] == "shown") {
      ASSERT_EQ(w.size(), 4u) << line;
      Scalars& into = w[0] == "scalar" ? stored : shown;
      EXPECT_TRUE(into.emplace(std::make_pair(w[1], std::stoll(w[2])), std::stod(w[3])).second) << "twice: " << line;
    }
  }
  EXPECT_EQ(files.size(), 2u) << "one event file per run";

  // What metrics.jsonl logged (the resumed run kept the first run's lines), as floats.
  Scalars expected;
  std::istringstream jsonl(testing::slurp(dir + "/run/metrics.jsonl"));
  for (std::string line; std::getline(jsonl, line);) {
    const auto j = nlohmann::json::parse(line);
    const int64_t step = j["step"].get<int64_t>();
    if (j.contains("val_loss")) {
      expected[{"val/loss", step}] = static_cast<float>(j["val_loss"].get<double>());
      continue;
    }
    expected[{"train/loss", step}] = static_cast<float>(j["loss"].get<double>());
    expected[{"train/lr", step}] = static_cast<float>(j["lr"].get<double>());
    expected[{"memory/parameters", step}] = static_cast<float>(j["mem"]["parameters"].get<double>());
    expected[{"comm/bytes_per_step", step}] = static_cast<float>(j["comm_bytes"].get<double>());
  }
  EXPECT_EQ(expected.size(), 6u * 4 + 3);  // steps 2..12 every 2; validation at 4, 8 and 12
  for (const auto& [key, value] : expected) {
    SCOPED_TRACE(key.first + " at step " + std::to_string(key.second));
    ASSERT_TRUE(stored.count(key)) << "not in the event files";
    EXPECT_EQ(stored[key], value);
    ASSERT_TRUE(shown.count(key)) << "not shown by TensorBoard";
    EXPECT_EQ(shown[key], value);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace memtrain
