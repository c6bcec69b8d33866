// Bad input through the binary, as a user meets it: exit status 2, one "error:" line on stderr naming the key or
// file, and nothing written under output.dir.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/status.h"
#include "data/token_shard.h"
#include "tests/integration/cli.h"

namespace memtrain {
namespace {

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "memtrain_bad_" + std::to_string(getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ + "/data");
    std::vector<int32_t> tokens(5000);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i * 31 % 256);
    MEMTRAIN_CHECK_OK(data::write_token_shard(dir_ + "/data/train.bin", tokens, 256));
    MEMTRAIN_CHECK_OK(data::write_token_shard(dir_ + "/data/val.bin", tokens, 256));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The default config shrunk to a 1-layer model over dir_/data, writing to dir_/out; after a subcommand.
  std::string tiny(const std::string& extra = "") const {
    return " configs/default.toml --set data.text=\"\" --set data.dataset=" + dir_ +
           "/data --set model.n_layer=1 --set model.n_embd=32 --set output.dir=" + dir_ + "/out " + extra;
  }

  // Runs `train` on the tiny model and checks the failure contract.
  void expect_rejected(const std::string& extra, const std::string& must_name) {
    const std::string out = dir_ + "/out";
    auto r = testing::run_memtrain("train" + tiny("--set train.max_steps=2 " + extra), dir_);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(must_name), std::string::npos) << "stderr should name " << must_name << ": " << r.err;
    EXPECT_FALSE(std::filesystem::exists(out)) << "a rejected run wrote under output.dir";
  }

  void corrupt(const std::string& file, int64_t offset, char byte) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(offset);
    f.put(byte);
  }

  std::string dir_;
};

TEST_F(BadInput, GoodDataTrains) {
  auto r = testing::run_memtrain("train" + tiny("--set train.max_steps=2 --set output.samples=0"), dir_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(BadInput, BadMagic) {
  corrupt(dir_ + "/data/train.bin", 0, 'X');
  expect_rejected("", "train.bin");
}

TEST_F(BadInput, TruncatedShard) {
  std::filesystem::resize_file(dir_ + "/data/val.bin", 1000);
  expect_rejected("", "val.bin");
}

TEST_F(BadInput, FlippedTokenByte) {
  corrupt(dir_ + "/data/train.bin", 64 + 777, '\x7f');
  expect_rejected("", "train.bin");
}

TEST_F(BadInput, MissingShard) {
  std::filesystem::remove(dir_ + "/data/val.bin");
  expect_rejected("", "val.bin");
}

TEST_F(BadInput, EmptyShardFile) {
  std::ofstream(dir_ + "/data/train.bin", std::ios::trunc);
  expect_rejected("", "train.bin");
}

TEST_F(BadInput, ShardVocabularyLargerThanTheModel) {
  std::vector<int32_t> tokens(100, 300);
  MEMTRAIN_CHECK_OK(data::write_token_shard(dir_ + "/data/train.bin", tokens, 512));
  expect_rejected("", "model.vocab_size");
}

TEST_F(BadInput, MissingTextInput) {
  auto r = testing::run_memtrain("train configs/default.toml --set data.text=" + dir_ + "/nope.txt --set output.dir=" +
                                     dir_ + "/out",
                                 dir_);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("nope.txt"), std::string::npos) << r.err;
}

TEST_F(BadInput, BadConfigValueWritesNothing) {
  expect_rejected("--set model.n_head=3", "model.n_embd");
}

TEST_F(BadInput, UnknownKeySuggestsTheNearest) { expect_rejected("--set train.max_stpes=3", "did you mean train.max_steps"); }

TEST_F(BadInput, MissingConfigFile) {
  auto r = testing::run_memtrain("train configs/does_not_exist.toml", dir_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("configs/does_not_exist.toml"), std::string::npos) << r.err;
}

TEST_F(BadInput, UnknownCommandAndFlag) {
  EXPECT_EQ(testing::run_memtrain("frobnicate", dir_).exit_code, 2);
  auto r = testing::run_memtrain("train configs/default.toml --bogus", dir_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--bogus"), std::string::npos);
}

TEST_F(BadInput, MemoryBudgetExceededIsARunTimeFailureWithTheBreakdown) {
  auto r = testing::run_memtrain("train" + tiny("--set train.max_steps=2 --set memory.budget=200KiB"), dir_);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.err.rfind("error: memory.budget: ", 0), 0u) << r.err;
  for (const char* category : {"parameters:", "gradients:", "activations:", "total:"})
    EXPECT_NE(r.err.find(category), std::string::npos) << category << " missing from " << r.err;
}

TEST_F(BadInput, EvalAndSampleRefuseSeveralLaunchedCopies) {
  // What mpirun and srun tell each process: eval and sample run in one process and must not run N times.
  for (const char* cmd : {"eval", "sample"}) {
    for (const char* env : {"OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_LOCAL_RANK=0 "
                            "OMPI_COMM_WORLD_LOCAL_SIZE=2",
                            "SLURM_NTASKS=4 SLURM_PROCID=1 SLURM_LOCALID=1"}) {
      auto r = testing::run_memtrain(std::string(cmd) + " configs/default.toml --set output.dir=" + dir_ + "/out",
                                     dir_, env);
      EXPECT_EQ(r.exit_code, 2) << cmd << " " << env << ": " << r.err;
      EXPECT_NE(r.err.find("runs in one process"), std::string::npos) << r.err;
      EXPECT_FALSE(std::filesystem::exists(dir_ + "/out"));
    }
  }
}

TEST_F(BadInput, CorruptWeightsAreDetectedByEvalAndSample) {
  const std::string common = tiny("--set output.samples=1 --set output.sample_tokens=5");
  ASSERT_EQ(testing::run_memtrain("train" + common + " --set train.max_steps=1", dir_).exit_code, 0);
  const std::string weights = dir_ + "/out/model.safetensors";
  corrupt(weights, static_cast<int64_t>(std::filesystem::file_size(weights)) - 5, '\x11');
  for (const char* cmd : {"eval", "sample"}) {
    auto r = testing::run_memtrain(cmd + common, dir_);
    EXPECT_EQ(r.exit_code, 2) << cmd;
    EXPECT_NE(r.err.find("model.safetensors: checksum mismatch"), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace memtrain
