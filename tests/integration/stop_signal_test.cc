// `memtrain train` sent SIGUSR1 or SIGTERM part-way (a cluster's preemption warning, a time limit coming): it saves a
// checkpoint of the step it is at, exits with 3 (trainer/stop_signal.h), and a run with train.resume = auto goes on
// to the uninterrupted run's losses bit for bit; in one process, and under mpirun at 2 ranks, where mpirun forwards
// SIGUSR1 to every rank and a signal to one rank alone stops both. A second signal exits at once with 128 + its
// number, and the newest complete checkpoint still resumes. Suites named Mpi* carry the label `mpi`.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/integration/cli.h"
#include "trainer/stop_signal.h"

namespace memtrain {
namespace {

class StopSignal : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "memtrain_stop_" + std::to_string(getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // 100 steps of a small GPT (about 20 ms each), a checkpoint every 10, resuming automatically.
  std::string args(const std::string& out) const {
    return " train configs/default.toml --set model.n_layer=2 --set model.n_embd=128 --set model.block_size=64"
           " --set train.batch_size=8 --set train.max_steps=100 --set train.log_interval=1 --set train.eval_interval=0"
           " --set train.eval_batches=2 --set train.threads=1 --set output.samples=0 --set parallel.timeout_s=20"
           " --set train.checkpoint_interval=10 --set train.resume=auto --set output.dir=" + dir_ + "/" + out;
  }
  static std::string mpirun(int np) { return testing::kMpirun + ("-np " + std::to_string(np) + " "); }
  std::vector<double> losses(const std::string& out) const {
    return testing::logged_losses(dir_ + "/" + out + "/metrics.jsonl");
  }
  // Starts `command` (the training of output.dir `out`) and returns its pid once step `step` is logged.
  pid_t start_and_wait(const std::string& command, const std::string& out, int64_t step) const {
    const pid_t pid = testing::start_shell(command, dir_);
    EXPECT_TRUE(testing::wait_for_step(dir_ + "/" + out + "/metrics.jsonl", step, 120))
        << "step " << step << " never logged";
    return pid;
  }
  // The step after which the run said it stopped, or -1.
  static int64_t stopped_after(const std::string& out, const std::string& signal) {
    const std::string line = "stopped by " + signal + " after step ";
    const size_t at = out.find(line);
    return at == std::string::npos ? -1 : std::atoll(out.c_str() + at + line.size());
  }
  bool has_checkpoint(const std::string& out, int64_t step) const {
    char name[32];
    std::snprintf(name, sizeof(name), "step_%08lld.h5", static_cast<long long>(step));
    return std::filesystem::exists(dir_ + "/" + out + "/checkpoints/" + name);
  }
  std::string dir_;
  const std::string binary_ = MEMTRAIN_BINARY_DIR "/memtrain";
};

TEST_F(StopSignal, SavesAtTheNextStepBoundaryAndTheResumedRunEndsAsIfUninterrupted) {
  auto ref = testing::run_memtrain(args("ref"), dir_);
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const std::vector<double> want = losses("ref");
  ASSERT_EQ(want.size(), 100u);
  for (const char* name : {"SIGUSR1", "SIGTERM"}) {
    SCOPED_TRACE(name);
    const std::string out = std::string("stopped_") + name;
    const pid_t pid = start_and_wait(binary_ + args(out), out, 3);
    ASSERT_EQ(kill(pid, std::string(name) == "SIGUSR1" ? SIGUSR1 : SIGTERM), 0);
    auto r = testing::finish(pid, dir_);
    ASSERT_EQ(r.exit_code, trainer::kExitStopped) << r.out << r.err;
    const int64_t step = stopped_after(r.out, name);
    EXPECT_GE(step, 3) << r.out;
    EXPECT_LT(step, 100) << r.out;
    EXPECT_TRUE(has_checkpoint(out, step)) << "no checkpoint of step " << step;
    auto resumed = testing::run_memtrain(args(out), dir_);
    ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
    EXPECT_NE(resumed.out.find("resumed from"), std::string::npos) << resumed.out;
    EXPECT_EQ(losses(out), want);
  }
}

// The second signal must come while the first one's stop is under way and more than trainer::kRepeatWindowMs after
// it (sooner it counts as the same request relayed twice, which is checked too): the process is frozen (SIGSTOP)
// 50 ms after the first, while its step of about 2 s (a 12.8M GPT on one thread) still runs, for 1.2 s.
TEST_F(StopSignal, ASecondSignalExitsAtOnceAndTheNewestCheckpointStillResumes) {
  const std::string slow = " --set model.n_layer=4 --set model.n_embd=512 --set model.block_size=128"
                           " --set train.batch_size=16 --set train.max_steps=4 --set train.checkpoint_interval=1";
  auto ref = testing::run_memtrain(args("ref") + slow, dir_);
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const pid_t pid = start_and_wait(binary_ + args("twice") + slow, "twice", 2);
  ASSERT_EQ(kill(pid, SIGUSR1), 0);
  ASSERT_EQ(kill(pid, SIGUSR1), 0);  // a repeat: ignored
  usleep(50 * 1000);                 // the handler has run
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  usleep(1200 * 1000);
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  ASSERT_EQ(kill(pid, SIGCONT), 0);
  auto r = testing::finish(pid, dir_);
  EXPECT_EQ(r.exit_code, 128 + SIGTERM) << r.out << r.err;
  EXPECT_NE(r.err.find("second stop signal: exiting now"), std::string::npos) << r.err;
  auto resumed = testing::run_memtrain(args("twice") + slow, dir_);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("resumed from"), std::string::npos) << resumed.out;
  EXPECT_EQ(losses("twice"), losses("ref"));
}

// The ranks mpirun started (its children).
std::vector<pid_t> children(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> c;
  for (pid_t p; f >> p;) c.push_back(p);
  return c;
}

using MpiStopSignal = StopSignal;

TEST_F(MpiStopSignal, EveryRankStopsAtTheSameStepWhenMpirunOrOneRankIsSignalled) {
  auto ref = testing::run_shell(mpirun(2) + binary_ + args("ref"), dir_);
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const std::vector<double> want = losses("ref");
  ASSERT_EQ(want.size(), 100u);
  for (const bool whole_job : {true, false}) {
    SCOPED_TRACE(whole_job ? "SIGUSR1 to mpirun" : "SIGUSR1 to one rank alone");
    const std::string out = whole_job ? "mpirun" : "one_rank";
    const pid_t pid = start_and_wait(mpirun(2) + binary_ + args(out), out, 3);
    pid_t target = pid;
    if (!whole_job) {
      const std::vector<pid_t> ranks = children(pid);
      ASSERT_EQ(ranks.size(), 2u);
      target = ranks.back();
    }
    ASSERT_EQ(kill(target, SIGUSR1), 0);
    auto r = testing::finish(pid, dir_);
    ASSERT_EQ(r.exit_code, trainer::kExitStopped) << r.out << r.err;
    const int64_t step = stopped_after(r.out, "SIGUSR1");  // printed by rank 0, which agreed with the signalled rank
    EXPECT_GE(step, 3) << r.out;
    EXPECT_TRUE(has_checkpoint(out, step)) << "no checkpoint of step " << step;
    auto resumed = testing::run_shell(mpirun(2) + binary_ + args(out), dir_);
    ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
    EXPECT_EQ(losses(out), want);
  }
}

}  // namespace
}  // namespace memtrain
