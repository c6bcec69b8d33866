// memory.activations = swap_ssd from the command line: a bad offload.ssd_path stops the run before training with
// exit status 2 and a message naming the key and the reason; a run leaves no file in the directory, neither while
// it trains (the file is unlinked once open) nor after SIGTERM.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "tests/integration/cli.h"

namespace memtrain {
namespace {

class SwapSsd : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "memtrain_swap_ssd_" + std::to_string(getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ + "/swap");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  testing::CliResult train(const std::string& sets) {
    return testing::run_memtrain("train configs/default.toml --set memory.activations=swap_ssd --set output.dir=" +
                                     dir_ + "/out --set train.max_steps=2 --set output.samples=0 " + sets,
                                 dir_);
  }
  std::string dir_;
};

TEST_F(SwapSsd, BadDirectoriesStopTheRunBeforeTraining) {
  auto missing = train("--set offload.ssd_path=" + dir_ + "/nope");
  EXPECT_EQ(missing.exit_code, 2) << missing.err;
  EXPECT_NE(missing.err.find("error: offload.ssd_path: " + dir_ + "/nope"), std::string::npos) << missing.err;
  EXPECT_NE(missing.err.find("No such file or directory"), std::string::npos) << missing.err;
  auto unset = train("");
  EXPECT_EQ(unset.exit_code, 2) << unset.err;
  EXPECT_NE(unset.err.find("error: offload.ssd_path: must name a directory"), std::string::npos) << unset.err;
  std::filesystem::create_directories(dir_ + "/out");
  auto file = train("--set offload.ssd_path=" + dir_ + "/out/metrics.jsonl");
  EXPECT_NE(file.exit_code, 0);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/out/metrics.jsonl")) << "no training step ran";
}

// A directory without room for one micro-batch's swapped blocks stops the run before training, saying how much
// is free and how much is needed. Needs root to mount a small tmpfs (skipped otherwise, with the reason).
TEST_F(SwapSsd, ADirectoryWithoutRoomStopsTheRunBeforeTraining) {
  if (geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
  if (std::system(("mount -t tmpfs -o size=4m tmpfs '" + dir_ + "/swap' 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "mount -t tmpfs failed (no CAP_SYS_ADMIN?)";
  auto r = train("--set offload.ssd_path=" + dir_ + "/swap");
  EXPECT_EQ(std::system(("umount '" + dir_ + "/swap'").c_str()), 0);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("error: offload.ssd_path: " + dir_ + "/swap has "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("free; one micro-batch swaps "), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/out/metrics.jsonl")) << "no training step ran";
}

TEST_F(SwapSsd, NoFileIsLeftWhileTrainingOrAfterSigtermOrSigkill) {
  // Started in the background; once it has logged a step the swap directory is looked at, then the signal. SIGTERM
  // stops the run at the next step boundary with a checkpoint (status 3, trainer/stop_signal.h); SIGKILL at once.
  for (const auto& [signal, status] : {std::pair{"TERM", "3"}, std::pair{"KILL", "137"}}) {
    SCOPED_TRACE(signal);
    std::filesystem::remove_all(dir_ + "/out");
    const std::string cmd = "( '" + std::string(MEMTRAIN_BINARY_DIR) +
                            "/memtrain' train configs/default.toml --set memory.activations=swap_ssd --set "
                            "offload.ssd_path=" + dir_ + "/swap --set output.dir=" + dir_ +
                            "/out --set train.max_steps=100000 --set train.log_interval=1 --set train.eval_interval=0 & "
                            "pid=$!; for i in $(seq 600); do grep -q step " + dir_ +
                            "/out/metrics.jsonl 2>/dev/null && break; sleep 0.1; done; "
                            "echo during: $(ls -A " + dir_ + "/swap | wc -l); kill -" + signal + " $pid; wait $pid; "
                            "echo status: $?; echo after: $(ls -A " + dir_ + "/swap | wc -l) )";
    auto r = testing::run_shell(cmd, dir_);
    EXPECT_NE(r.out.find("during: 0"), std::string::npos) << r.out << r.err;
    EXPECT_NE(r.out.find(std::string("status: ") + status + "\n"), std::string::npos) << r.out << r.err;
    EXPECT_NE(r.out.find("after: 0"), std::string::npos) << r.out << r.err;
  }
}

}  // namespace
}  // namespace memtrain
