// Checkpoints in one process: a run stopped after 10 steps and resumed (train.resume = "auto") continues the
// uninterrupted 20-step run bit for bit; with the newest checkpoint corrupted (one flipped byte) resume falls back
// to the one before and still matches; only train.keep_checkpoints files stay; saves in the background resume alike
// and none is dropped; every optimizer's state round-trips.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "trainer/config.h"
#include "trainer/train_loop.h"

namespace memtrain {
namespace {

class CheckpointResume : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "memtrain_resume_" + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
    std::ofstream f(dir_ + "/text.txt");
    for (int i = 0; i < 400; ++i) f << "line " << i << ": the quick brown fox " << (i * 7919 % 1000) << " jumps.\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // 20 steps' schedule whatever max_steps is (decay_steps fixed), a checkpoint every `every` steps.
  trainer::Config config(const std::string& out, int64_t max_steps, const std::string& arch = "gpt2",
                         int64_t every = 5, const std::string& extra = "") {
    const std::string toml = "[model]\narch = \"" + arch + "\"\nn_layer = 2\nn_head = 4\nn_kv_head = " +
                             (arch == "llama" ? "2" : "0") + "\nn_embd = 32\nblock_size = 32\n"
                             "[data]\ntext = [\"" + dir_ + "/text.txt\"]\n"
                             "[train]\nmax_steps = " + std::to_string(max_steps) +
                             "\nbatch_size = 4\nlog_interval = 5\neval_interval = 0\neval_batches = 2\n"
                             "checkpoint_interval = " + std::to_string(every) + "\nkeep_checkpoints = 3\n" + extra +
                             "[optim]\nwarmup_steps = 3\ndecay_steps = 20\n"
                             "[output]\ndir = \"" + dir_ + "/" + out + "\"\nsave_weights = false\nsamples = 0\n";
    auto cfg = trainer::parse_config(toml, "test.toml", {});
    MEMTRAIN_CHECK_OK(cfg.status());
    return *cfg;
  }
  std::string dir_;
};

TEST_F(CheckpointResume, StoppedAndResumedRunsContinueTheUninterruptedCurveBitForBit) {
  for (const std::string arch : {"gpt2", "llama"}) {
    SCOPED_TRACE(arch);
    auto full = trainer::run_training(config(arch + "_full", 20, arch), /*quiet=*/true);
    ASSERT_TRUE(full.ok()) << full.status();
    auto first = trainer::run_training(config(arch + "_part", 10, arch), /*quiet=*/true);
    ASSERT_TRUE(first.ok()) << first.status();
    auto rest = trainer::run_training(config(arch + "_part", 20, arch, 5, "resume = \"auto\"\n"), /*quiet=*/true);
    ASSERT_TRUE(rest.ok()) << rest.status();
    ASSERT_EQ(rest->losses.size(), 10u);
    for (size_t i = 0; i < 10; ++i) EXPECT_EQ(rest->losses[i], full->losses[10 + i]) << "step " << 11 + i;
    EXPECT_EQ(rest->final_val_loss, full->final_val_loss);
  }
}

TEST_F(CheckpointResume, ACorruptNewestCheckpointFallsBackToThePreviousOne) {
  auto full = trainer::run_training(config("full", 20), /*quiet=*/true);
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_TRUE(trainer::run_training(config("part", 10), /*quiet=*/true).ok());
  // Flip a byte in the middle of step 10's file (its datasets fill most of it).
  const std::string newest = dir_ + "/part/checkpoints/step_00000010.h5";
  std::fstream f(newest, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.is_open());
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  f.seekg(size / 2);
  char c = 0;
  f.read(&c, 1);
  c ^= 0x20;
  f.seekp(size / 2);
  f.write(&c, 1);
  f.close();
  auto rest = trainer::run_training(config("part", 20, "gpt2", 5, "resume = \"auto\"\n"), /*quiet=*/true);
  ASSERT_TRUE(rest.ok()) << rest.status();
  ASSERT_EQ(rest->losses.size(), 15u) << "resumed from step 5";
  for (size_t i = 0; i < 15; ++i) EXPECT_EQ(rest->losses[i], full->losses[5 + i]) << "step " << 6 + i;
}

TEST_F(CheckpointResume, OnlyTheNewestCheckpointsStay) {
  ASSERT_TRUE(trainer::run_training(config("keep", 12, "gpt2", 2), /*quiet=*/true).ok());
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/keep/checkpoints"))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"latest", "step_00000008.h5", "step_00000010.h5", "step_00000012.h5"}));
  std::ifstream latest(dir_ + "/keep/checkpoints/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "step_00000012.h5");
}

// Saves in the background (train.checkpoint_async): a run stopped and resumed from them continues bit for bit, and
// with a save due every step none is dropped (each waits for the one before).
TEST_F(CheckpointResume, BackgroundSavesResumeBitForBitAndNoneIsDropped) {
  const std::string async = "checkpoint_async = true\n";
  auto full = trainer::run_training(config("full", 20), /*quiet=*/true);
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_TRUE(trainer::run_training(config("part", 10, "gpt2", 5, async), /*quiet=*/true).ok());
  auto rest = trainer::run_training(config("part", 20, "gpt2", 5, async + "resume = \"auto\"\n"), /*quiet=*/true);
  ASSERT_TRUE(rest.ok()) << rest.status();
  ASSERT_EQ(rest->losses.size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(rest->losses[i], full->losses[10 + i]) << "step " << 11 + i;

  trainer::Config every = config("every", 6, "gpt2", 1, async);
  every.train.keep_checkpoints = 100;
  ASSERT_TRUE(trainer::run_training(every, /*quiet=*/true).ok());
  for (int step = 1; step <= 6; ++step) {
    EXPECT_TRUE(std::filesystem::exists(dir_ + "/every/checkpoints/step_0000000" + std::to_string(step) + ".h5"))
        << step;
  }
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/every/checkpoints"))
    EXPECT_NE(e.path().extension(), ".tmp") << e.path();
}

// Every optimizer's state round-trips: stopped at step 10 and resumed, each continues its own uninterrupted run bit
// for bit. The projections refresh every 4 steps, so the resumed runs use a GaLore projection from the checkpoint
// (step 9's) and APOLLO's redrawn one; 8-bit AdamW has quantized (>= 4096 elements) and fp32-moment tensors.
struct OptimizerCase {
  std::string label, optim;
};
void PrintTo(const OptimizerCase& c, std::ostream* os) { *os << c.label; }
class CheckpointResumeOptimizer : public CheckpointResume, public ::testing::WithParamInterface<OptimizerCase> {};

TEST_P(CheckpointResumeOptimizer, StoppedAndResumedRunsMatchBitForBit) {
  const std::string extra = GetParam().optim;
  auto with_optim = [&](trainer::Config cfg) {
    std::vector<std::string> overrides;
    for (size_t at = 0; at < extra.size();) {
      const size_t end = extra.find(' ', at);
      overrides.push_back(extra.substr(at, end == std::string::npos ? std::string::npos : end - at));
      at = end == std::string::npos ? extra.size() : end + 1;
    }
    auto out = trainer::parse_config(trainer::dump_config(cfg), "dump.toml", overrides);
    MEMTRAIN_CHECK_OK(out.status());
    return *out;
  };
  const std::string name = GetParam().label;
  auto full = trainer::run_training(with_optim(config(name + "_full", 20)), /*quiet=*/true);
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_TRUE(trainer::run_training(with_optim(config(name + "_part", 10)), /*quiet=*/true).ok());
  auto rest = trainer::run_training(with_optim(config(name + "_part", 20, "gpt2", 5, "resume = \"auto\"\n")),
                                    /*quiet=*/true);
  ASSERT_TRUE(rest.ok()) << rest.status();
  ASSERT_EQ(rest->losses.size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(rest->losses[i], full->losses[10 + i]) << "step " << 11 + i;
}

INSTANTIATE_TEST_SUITE_P(
    Every, CheckpointResumeOptimizer,
    ::testing::Values(OptimizerCase{"adamw8bit", "optim.name=adamw8bit"},
                      OptimizerCase{"adafactor", "optim.name=adafactor"},
                      OptimizerCase{"adafactor_momentum", "optim.name=adafactor optim.adafactor_momentum=true"},
                      OptimizerCase{"apollo", "optim.name=apollo optim.rank=4 optim.update_proj_gap=4"},
                      OptimizerCase{"apollo_mini", "optim.name=apollo_mini optim.update_proj_gap=4"},
                      OptimizerCase{"galore", "optim.name=galore_adamw optim.rank=4 optim.update_proj_gap=4"},
                      OptimizerCase{"galore_int8", "optim.name=galore_adamw optim.rank=4 optim.update_proj_gap=4 "
                                                   "optim.galore_int8_projection=true"},
                      OptimizerCase{"smmf", "optim.name=smmf"},
                      OptimizerCase{"coap", "optim.name=coap_adamw optim.rank=4 optim.coap_update_interval=3 "
                                            "optim.coap_reproject_factor=2"},
                      // The checkpoint holds the drawn blocks' state: resumed within a period (step 10 of 9-11)
                      // and at a period's end (10 of 6-10, the next period fresh).
                      OptimizerCase{"lisa_mid_period", "optim.lisa_layers=1 optim.lisa_interval=3"},
                      OptimizerCase{"lisa_period_end", "optim.lisa_layers=1 optim.lisa_interval=5"},
                      // No state at all: the resumed run must redraw each step's direction from the step alone.
                      OptimizerCase{"zo_sgd", "optim.name=zo_sgd"},
                      // Not an optimizer: SLTrain's factors (the support comes back from its Philox draw).
                      OptimizerCase{"sltrain", "model.sltrain_rank=4"}),
    [](const ::testing::TestParamInfo<OptimizerCase>& info) { return info.param.label; });

}  // namespace
}  // namespace memtrain
