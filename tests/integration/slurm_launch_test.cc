// The launch scripts against a real Slurm: a one-node cluster of Debian's slurmctld, slurmd and munged that
// launch/local-slurm/start.sh brings up for the test (CI runs as root with the packages `make setup` installs;
// elsewhere the tests are skipped, saying why). `sbatch launch/slurm.sbatch` with 2 tasks ends with the losses of
// `launch/mpirun.sh -n 2` bit for bit; a job sent SIGUSR1 part-way (to its ranks, or to the batch script as
// --signal=B:USR1@120 does before the time limit) checkpoints, requeues itself, resumes and ends with the same
// losses; a bad override is one clear error from every path. The test processes take turns on the cluster (a lock
// file), since ctest runs them in parallel.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "tests/integration/cli.h"

namespace memtrain {
namespace {

class SlurmLaunch : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (getuid() != 0) {
      skip_ = "starting a local Slurm needs root (CI runs as root)";
      return;
    }
    if (!std::filesystem::exists("/usr/sbin/slurmctld") || !std::filesystem::exists("/usr/sbin/munged")) {
      skip_ = "Slurm is not installed (make setup installs it)";
      return;
    }
    lock_ = open("/tmp/memtrain-slurm-test.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    ASSERT_GE(lock_, 0);
    ASSERT_EQ(flock(lock_, LOCK_EX), 0);
    if (std::system("pgrep -x slurmctld >/dev/null") == 0) {
      skip_ = "another slurmctld runs on this machine (stop it: launch/local-slurm/stop.sh DIR)";
      return;
    }
    cluster_ = ::testing::TempDir() + "memtrain_slurm_" + std::to_string(getpid());
    std::filesystem::create_directories(cluster_);
    auto r = testing::run_shell("launch/local-slurm/start.sh " + cluster_ + " 8", cluster_);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    setenv("SLURM_CONF", (cluster_ + "/slurm.conf").c_str(), 1);
    // Jobs inherit the environment: Open MPI on shared memory only, without CMA (containers forbid it).
    setenv("OMPI_MCA_btl", "self,vader", 1);
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
  }
  static void TearDownTestSuite() {
    if (!cluster_.empty()) {
      testing::run_shell("launch/local-slurm/stop.sh " + cluster_, cluster_);
      std::filesystem::remove_all(cluster_);
    }
    if (lock_ >= 0) close(lock_);  // releases the lock
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    dir_ = ::testing::TempDir() + "memtrain_launch_" + std::to_string(getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A small GPT for `steps` steps on one thread per rank, metrics every step, into output.dir `out`.
  std::string sets(const std::string& out, int steps) const {
    return absl::StrCat(" --set model.n_layer=2 --set model.n_embd=128 --set model.block_size=64 --set train.batch_size=8",
                        " --set train.max_steps=", steps, " --set train.log_interval=1 --set train.eval_interval=0",
                        " --set train.eval_batches=2 --set train.threads=1 --set output.samples=0",
                        " --set output.dir=", dir_, "/", out);
  }
  std::vector<double> losses(const std::string& out) const {
    return testing::logged_losses(dir_ + "/" + out + "/metrics.jsonl");
  }
  // Submits launch/slurm.sbatch with 2 tasks on the node; returns the job id.
  std::string sbatch(const std::string& args) const {
    auto r = testing::run_shell("sbatch --parsable --ntasks-per-node=2 --output=" + dir_ + "/job-%j.out" +
                                    " launch/slurm.sbatch " + args, dir_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::string(absl::StripAsciiWhitespace(r.out));
  }
  struct JobEnd {
    std::string state;  // COMPLETED, FAILED, ...
    std::string exit;   // "status:signal"
    std::string output;
  };
  // Waits for job `id` to leave the queue (a requeued job stays in it), then reads its final state and output.
  JobEnd wait_for(const std::string& id) const {
    for (int i = 0; i < 3000; ++i) {
      if (testing::run_shell("squeue -h -j " + id, dir_).out.empty()) break;
      usleep(100000);
    }
    const std::string show = testing::run_shell("scontrol show job -o " + id, dir_).out;
    auto field = [&](const std::string& name) {
      const size_t at = show.find(" " + name + "=");
      if (at == std::string::npos) return std::string("?");
      const size_t from = at + name.size() + 2;
      return show.substr(from, show.find(' ', from) - from);
    };
    return {field("JobState"), field("ExitCode"), testing::slurp(dir_ + "/job-" + id + ".out")};
  }
  static size_t count(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  }
  std::string dir_;
  static inline std::string skip_, cluster_;
  static inline int lock_ = -1;
};

TEST_F(SlurmLaunch, SbatchWithTwoTasksEndsWithTheLossesOfMpirun) {
  auto ref = testing::run_shell("launch/mpirun.sh -n 2 configs/default.toml" + sets("mpirun", 20), dir_);
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const std::vector<double> want = losses("mpirun");
  ASSERT_EQ(want.size(), 20u);
  // With snapshots, so each node's keeper runs as a step of its own.
  const JobEnd end = wait_for(sbatch("configs/default.toml" + sets("slurm", 20) + " --set snapshot.interval=5"));
  EXPECT_EQ(end.state, "COMPLETED") << end.output;
  EXPECT_EQ(end.exit, "0:0") << end.output;
  EXPECT_NE(end.output.find("dp=2 tp=1"), std::string::npos) << end.output;
  EXPECT_EQ(losses("slurm"), want);
}

TEST_F(SlurmLaunch, AJobSignalledPartWayCheckpointsRequeuesAndEndsWithTheSameLosses) {
  auto ref = testing::run_shell("launch/mpirun.sh -n 2 configs/default.toml" + sets("mpirun", 40), dir_);
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const std::vector<double> want = losses("mpirun");
  ASSERT_EQ(want.size(), 40u);
  // To the ranks (a preemption's signal), and to the batch script (what --signal=B:USR1@120 sends).
  for (const std::string signal : {"--signal=USR1", "--batch --signal=USR1"}) {
    SCOPED_TRACE(signal);
    const std::string out = signal.size() > 15 ? "batch" : "ranks";
    const std::string id = sbatch("configs/default.toml" + sets(out, 40));
    ASSERT_TRUE(testing::wait_for_step(dir_ + "/" + out + "/metrics.jsonl", 3, 120)) << "step 3 never logged";
    ASSERT_EQ(testing::run_shell("scancel " + signal + " " + id, dir_).exit_code, 0);
    const JobEnd end = wait_for(id);
    EXPECT_EQ(end.state, "COMPLETED") << end.output;
    EXPECT_NE(end.output.find("stopped by SIGUSR1 after step"), std::string::npos) << end.output;
    EXPECT_NE(end.output.find("requeueing job " + id), std::string::npos) << end.output;
    EXPECT_NE(end.output.find("run 2,"), std::string::npos) << end.output;
    EXPECT_NE(end.output.find("resumed from"), std::string::npos) << end.output;
    EXPECT_EQ(losses(out), want);
  }
}

TEST_F(SlurmLaunch, ABadOverrideIsOneClearErrorFromEveryPath) {
  const std::string bad = " --set model.n_layerz=2", reason = "model.n_layerz: unknown key";
  auto direct = testing::run_memtrain("train configs/default.toml" + sets("direct", 5) + bad, dir_);
  EXPECT_EQ(direct.exit_code, 2);
  EXPECT_EQ(count(direct.err, reason), 1u) << direct.err;
  auto mpirun = testing::run_shell("launch/mpirun.sh -n 2 configs/default.toml" + sets("mpirun", 5) + bad, dir_);
  EXPECT_EQ(mpirun.exit_code, 2);
  EXPECT_EQ(count(mpirun.err, reason), 1u) << mpirun.err;  // checked once, before mpirun starts two ranks
  const JobEnd job = wait_for(sbatch("configs/default.toml" + sets("slurm", 5) + bad));
  EXPECT_EQ(job.state, "FAILED") << job.output;
  EXPECT_EQ(job.exit, "2:0") << job.output;
  EXPECT_EQ(count(job.output, reason), 1u) << job.output;
  // And what the scripts refuse themselves.
  auto outside = testing::run_shell("env -u SLURM_JOB_ID launch/srun.sh configs/default.toml", dir_);
  EXPECT_EQ(outside.exit_code, 2);
  EXPECT_NE(outside.err.find("not inside a Slurm allocation"), std::string::npos) << outside.err;
  auto mesh = testing::run_shell("launch/mpirun.sh -n 3 configs/default.toml --set parallel.dp=2", dir_);
  EXPECT_EQ(mesh.exit_code, 2);
  EXPECT_NE(mesh.err.find("must equal the world size 3"), std::string::npos) << mesh.err;
  auto option = testing::run_shell("launch/mpirun.sh --ranks configs/default.toml", dir_);
  EXPECT_EQ(option.exit_code, 2);
  EXPECT_NE(option.err.find("unknown option --ranks"), std::string::npos) << option.err;
}

}  // namespace
}  // namespace memtrain
