// `memtrain train` launched by mpirun, as users run it: two ranks give the loss curve one process gives for the
// same global batch, rank 0 alone writes output.dir, and a rank killed mid-step brings the job down quickly with
// a non-zero status instead of leaving the other rank waiting; ranks killed inside checkpoint saves restart from
// an intact checkpoint. Suites are named Mpi* (label `mpi`).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"
#include "tests/integration/cli.h"

namespace memtrain {
namespace {

class MpiCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "memtrain_mpirun_" + std::to_string(getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string tiny(const std::string& out) const {
    return " configs/default.toml --set model.n_layer=2 --set model.n_embd=64 --set model.block_size=32"
           " --set train.batch_size=4 --set train.max_steps=12 --set train.log_interval=1 --set train.eval_interval=0"
           " --set train.eval_batches=2 --set train.threads=1 --set output.samples=0 --set output.dir=" + dir_ + "/" +
           out;
  }
  // Two ranks train with `sets`; rank `victim` is killed at `fault` ("NAME:N"). The job must fail within
  // parallel.timeout_s (10 s) plus a margin, with the kill and the dead rank named.
  void expect_killed_rank_ends_job(const std::string& out, const std::string& sets, int victim,
                                   const std::string& fault) const {
    const std::string args = " train" + tiny(out) + " --set parallel.timeout_s=10 --set train.max_steps=200" + sets;
    const std::string killed = "-np 1 env MEMTRAIN_FAULT=" + fault + " " + binary_ + args;
    const std::string alive = "-np 1 " + binary_ + args;
    const auto t0 = std::chrono::steady_clock::now();
    auto r = mpirun(victim == 0 ? killed + " : " + alive : alive + " : " + killed);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_NE(r.exit_code, 0);
    EXPECT_LT(seconds, 10 + 5) << "took " << seconds << " s";
    EXPECT_NE(r.err.find("SIGKILL at " + fault.substr(0, fault.find(':'))), std::string::npos) << r.err;
    // Open MPI names the rank that died.
    EXPECT_TRUE(r.err.find("signal 9") != std::string::npos || r.err.find("Killed") != std::string::npos) << r.err;
  }
  testing::CliResult mpirun(const std::string& apps) const { return testing::run_mpirun(apps, dir_); }
  std::vector<double> losses(const std::string& out) const {
    return testing::logged_losses(dir_ + "/" + out + "/metrics.jsonl");
  }
  std::string dir_;
  const std::string binary_ = MEMTRAIN_BINARY_DIR "/memtrain";
};

TEST_F(MpiCli, TwoRanksFollowOneProcessBitForBit) {
  auto one = testing::run_memtrain("train" + tiny("one") + " --set train.grad_accum=2", dir_);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  auto two = mpirun("-np 2 " + binary_ + " train" + tiny("two") + " --set zero.stage=2");
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_NE(two.out.find("dp=2 tp=1 cp=1 pp=1 ZeRO-2"), std::string::npos) << two.out;
  const std::vector<double> a = losses("one"), b = losses("two");
  ASSERT_EQ(a.size(), 12u);
  EXPECT_EQ(a, b);
  EXPECT_TRUE(testing::slurp(dir_ + "/one/model.safetensors") == testing::slurp(dir_ + "/two/model.safetensors"));
}

// metrics.jsonl's communication figures: with two data-parallel ranks (ZeRO-0, fp32) a step all-reduces the
// gradient buffer once, which the ring sends as 2(p-1)/p = 1 x its bytes: at least 4 bytes per parameter, exactly
// the buffer `memtrain plan` predicts (every tensor padded to 256-element blocks), plus the loss's one double; one
// process sends nothing. A step's time splits into compute, communication waits and I/O.
TEST_F(MpiCli, MetricsCountTheRingBytesOfDataParallelismAndSplitTheStepTime) {
  auto one = testing::run_memtrain("train" + tiny("one"), dir_);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  auto plan = testing::run_memtrain("plan" + tiny("two") + " --world-size 2 --json", dir_);
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  const double buffer = nlohmann::json::parse(plan.out)["communication"].get<double>();
  auto two = mpirun("-np 2 " + binary_ + " train" + tiny("two"));
  ASSERT_EQ(two.exit_code, 0) << two.err;
  const size_t at = two.out.find("gpt2, ");
  ASSERT_NE(at, std::string::npos) << two.out;
  const double params = std::atof(two.out.c_str() + at + 6);
  ASSERT_GT(params, 1e4);
  for (const char* out : {"one", "two"}) {
    SCOPED_TRACE(out);
    const std::string metrics = testing::slurp(dir_ + "/" + out + "/metrics.jsonl");
    int lines = 0;
    for (absl::string_view line : absl::StrSplit(metrics, '\n', absl::SkipEmpty())) {
      const auto m = nlohmann::json::parse(line);
      if (!m.contains("loss")) continue;
      ++lines;
      const double bytes = m["comm_bytes"].get<double>();
      if (std::string(out) == "one") {
        EXPECT_EQ(bytes, 0);
        EXPECT_EQ(m["comm_ms"].get<double>(), 0);
      } else {
        EXPECT_GE(bytes, 4 * params);
        EXPECT_EQ(bytes, buffer + 8);
      }
      const double compute = m["compute_ms"], comm = m["comm_ms"], io = m["io_ms"], step = m["step_ms"];
      EXPECT_GE(comm, 0);
      EXPECT_GE(io, 0);
      EXPECT_GT(compute, 0);
      EXPECT_NEAR(compute + comm + io, step, 1e-6 * step);
    }
    EXPECT_EQ(lines, 12);
  }
}

// Tensor, context (ring, all-to-all, or ring under StreamBP) or pipeline parallelism from the command line: `memtrain plan` predicts rank
// 0's peak bytes per category, and rank 0 samples from the model gathered from both ranks' parts. Bound: DESIGN.md's 5% (the plan is exact today).
TEST_F(MpiCli, TwoTensorContextOrPipelineParallelRanksMatchThePlan) {
  const std::vector<std::tuple<std::string, std::string, std::string>> meshes = {
      {"tp", " --set parallel.tp=2", "dp=1 tp=2 cp=1 pp=1"},
      {"tp_sp", " --set parallel.tp=2 --set parallel.sequence_parallel=true", "dp=1 tp=2 cp=1 pp=1"},
      {"cp", " --set parallel.cp=2", "dp=1 tp=1 cp=2 pp=1"},
      {"cp_a2a", " --set parallel.cp=2 --set parallel.cp_a2a=2", "dp=1 tp=1 cp=2 pp=1"},
      {"cp_stream", " --set parallel.cp=2 --set memory.activations=stream --set memory.stream_chunk=3",
       "dp=1 tp=1 cp=2 pp=1"},
      {"pp", " --set parallel.pp=2 --set train.grad_accum=4", "dp=1 tp=1 cp=1 pp=2"},
  };
  for (const auto& [out, sets, banner] : meshes) {
    SCOPED_TRACE(out);
    const std::string mesh = sets + " --set output.samples=1 --set output.sample_tokens=16";
    auto plan = testing::run_memtrain("plan" + tiny(out) + mesh + " --world-size 2 --json", dir_);
    ASSERT_EQ(plan.exit_code, 0) << plan.err;
    const auto predicted = nlohmann::json::parse(plan.out);
    auto r = mpirun("-np 2 " + binary_ + " train" + tiny(out) + mesh);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find(banner), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--- sample 1 ---"), std::string::npos) << r.out;
    const std::string metrics = testing::slurp(dir_ + "/" + out + "/metrics.jsonl");
    const std::vector<std::string> lines = absl::StrSplit(metrics, '\n', absl::SkipEmpty());
    ASSERT_FALSE(lines.empty());
    const auto measured = nlohmann::json::parse(lines.front())["mem"];
    for (const auto& [category, bytes] : measured.items()) {
      const double p = predicted[category].get<double>(), m = bytes.get<double>();
      EXPECT_LE(std::fabs(p - m), 0.05 * std::max(m, 1.0)) << category << ": plan " << p << ", measured " << m;
    }
  }
}

// launch/mpirun.sh as a user runs it across nodes, with a hostfile (this machine's two slots): the same losses as
// plain mpirun, bit for bit; its own checks refuse a bad hostfile and a non-number before mpirun starts.
TEST_F(MpiCli, TheLaunchScriptWithAHostfileTrainsAsPlainMpirun) {
  auto plain = mpirun("-np 2 " + binary_ + " train" + tiny("plain"));
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  { std::ofstream(dir_ + "/hosts") << "# the nodes\nlocalhost slots=2\n"; }
  const std::string script = "env OMPI_MCA_btl_vader_single_copy_mechanism=none launch/mpirun.sh";
  auto r = testing::run_shell(script + " --hostfile " + dir_ + "/hosts --ranks-per-node 2 --threads 1" + tiny("script") +
                                  " -- --mca btl self,vader",
                              dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("dp=2 tp=1"), std::string::npos) << r.out;
  EXPECT_EQ(losses("script"), losses("plain"));
  for (const auto& [args, reason] : std::vector<std::pair<std::string, std::string>>{
           {" --hostfile " + dir_ + "/none" + tiny("x"), "cannot read the hostfile"},
           {" --threads two" + tiny("x"), "not a number: 'two'"},
           {" --bind socket" + tiny("x"), "--bind core or none"}}) {
    auto bad = testing::run_shell(script + args, dir_);
    EXPECT_EQ(bad.exit_code, 2) << args;
    EXPECT_NE(bad.err.find(reason), std::string::npos) << args << ": " << bad.err;
  }
}

TEST_F(MpiCli, AKilledRankEndsTheJobWithinTheDeadline) {
  // Rank 0 dies by SIGKILL in step 3; rank 1 would wait in the next reduction. parallel.timeout_s bounds the wait.
  expect_killed_rank_ends_job("killed", "", 0, "train.step:3");
}

TEST_F(MpiCli, ARankKilledInTheMiddleOfAPipelineScheduleEndsTheJobWithinTheDeadline) {
  // The last stage dies at its 10th schedule action (the second step's); the first stage waits for a gradient.
  expect_killed_rank_ends_job("killed_pp", " --set parallel.pp=2 --set train.grad_accum=4", 1, "pipeline.action:10");
}

// Two ranks checkpointing every 3 steps, one of them killed inside a save (the file written, not yet committed)
// or in the middle of a step, synchronously and in the background: the restart (both ranks, train.resume = auto)
// resumes from the newest committed checkpoint and ends with the uninterrupted run's losses, bit for bit.
TEST_F(MpiCli, RanksKilledDuringCheckpointSavesResumeFromAnIntactOne) {
  for (const std::string async : {"false", "true"}) {
    SCOPED_TRACE("async " + async);
    const std::string sets = " --set train.checkpoint_interval=3 --set train.keep_checkpoints=2 --set zero.stage=1"
                             " --set train.resume=auto --set train.checkpoint_async=" + async;
    auto ref = mpirun("-np 2 " + binary_ + " train" + tiny("ref" + async) + sets);
    ASSERT_EQ(ref.exit_code, 0) << ref.err;
    const std::vector<double> want = losses("ref" + async);
    ASSERT_EQ(want.size(), 12u);
    struct Kill {
      int victim;
      std::string fault;
      int resumed_from;  // the newest checkpoint committed before the kill (synchronous saves)
    };
    for (const Kill& k : {Kill{0, "checkpoint.after_write:2", 3}, Kill{1, "checkpoint.after_write:3", 6},
                          Kill{1, "train.step:8", 6}}) {
      SCOPED_TRACE(k.fault);
      const std::string out = "killed" + async;
      std::filesystem::remove_all(dir_ + "/" + out);
      const std::string args = " train" + tiny(out) + sets;
      const std::string killed = "-np 1 env MEMTRAIN_FAULT=" + k.fault + " " + binary_ + args;
      const std::string alive = "-np 1 " + binary_ + args;
      auto r = mpirun(k.victim == 0 ? killed + " : " + alive : alive + " : " + killed);
      ASSERT_NE(r.exit_code, 0) << r.err;
      // The newest checkpoint the kill left under its final name; a background save may not have been committed
      // yet when the job died, so it is at most the last one due.
      int newest = 0;
      for (const auto& f : std::filesystem::directory_iterator(dir_ + "/" + out + "/checkpoints")) {
        int step = 0;
        const std::string name = f.path().filename().string();
        if (std::sscanf(name.c_str(), "step_%d.h5", &step) == 1 && name.size() == 16) newest = std::max(newest, step);
      }
      EXPECT_LE(newest, k.resumed_from);
      if (async == "false") {
        EXPECT_EQ(newest, k.resumed_from);
      }
      auto restart = mpirun("-np 2 " + binary_ + args);
      ASSERT_EQ(restart.exit_code, 0) << restart.err;
      if (newest > 0) {
        EXPECT_NE(restart.out.find("(step " + std::to_string(newest) + ")"), std::string::npos) << restart.out;
      }
      EXPECT_EQ(losses(out), want);
    }
  }
}

TEST_F(MpiCli, AMeshThatDoesNotMatchTheWorldIsAConfigError) {
  auto r = mpirun("-np 2 " + binary_ + " train" + tiny("bad") + " --set parallel.dp=3");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("error: rank 0: parallel.dp * parallel.tp * parallel.pp * parallel.cp = 3 * 1 * 1 * 1 = 3 "
                       "must equal the world size 2"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/bad"));
}

}  // namespace
}  // namespace memtrain
