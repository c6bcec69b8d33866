// `memtrain train` under mpirun with in-memory snapshots, a rank killed with SIGKILL mid-training: the restart
// (train.resume = auto, no disk checkpoint) continues from the newest snapshot, whose shared-memory objects the
// killed processes left behind, and ends with the uninterrupted run's losses bit for bit; also when the killed
// rank's memory is gone too (its objects removed, as a node's reboot would), rebuilt from the parity other ranks
// hold; and when two ranks of one group lose theirs (more than m = 1), it starts over, saying so. The snapshots are
// held by each simulated node's keeper process (snapshot.keeper): killing the keeper of a node with its ranks loses
// all of that node's memory, which m = 2 rebuilds. Suites are named Mpi* (label `mpi`).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "checkpoint/shm_segment.h"
#include "checkpoint/snapshot_layout.h"
#include "tests/integration/cli.h"
#include "trainer/snapshot_keeper.h"
#include "trainer/snapshots.h"

namespace memtrain {
namespace {

class MpiSnapshotKill : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "memtrain_snapkill_" + std::to_string(getpid());
    job_ = "killtest" + std::to_string(getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    std::filesystem::remove_all(dir_);
    for (int node = 0; node < 2; ++node) {
      if (auto keeper = connect(node); keeper.ok()) (*keeper)->stop().IgnoreError();
    }
    for (const std::string& n : checkpoint::ShmSegment::list("memtrain." + job_ + "."))  // a killed keeper's socket
      checkpoint::ShmSegment::unlink(n).IgnoreError();
  }
  // Four ranks, ZeRO-2, snapshots every 2 steps in groups of 2 with m parity shards, two simulated nodes.
  std::string args(const std::string& out, int m = 1) const {
    return " train configs/default.toml --set model.n_layer=2 --set model.n_embd=64 --set model.block_size=32"
           " --set train.batch_size=4 --set train.max_steps=10 --set train.log_interval=1 --set train.eval_interval=0"
           " --set train.eval_batches=2 --set train.threads=1 --set output.samples=0 --set zero.stage=2"
           " --set parallel.timeout_s=10 --set train.resume=auto --set snapshot.interval=2 --set snapshot.k=2"
           " --set snapshot.m=" + std::to_string(m) + " --set snapshot.ranks_per_node=2 --set snapshot.job=" + job_ +
           " --set output.dir=" + dir_ + "/" + out;
  }
  testing::CliResult mpirun(const std::string& apps) const { return testing::run_mpirun(apps, dir_); }
  std::vector<double> losses(const std::string& out) const {
    return testing::logged_losses(dir_ + "/" + out + "/metrics.jsonl");
  }
  // The keeper of simulated node `node` (ranks 2 node, 2 node + 1).
  absl::StatusOr<std::unique_ptr<checkpoint::KeeperClient>> connect(int node) const {
    return checkpoint::KeeperClient::connect(trainer::keeper_socket(job_, "n" + std::to_string(node)));
  }
  // Removes rank r's objects from its node's keeper: its data and the parity it holds.
  void forget(int r) const {
    auto layout = checkpoint::SnapshotLayout::plan({0, 0, 1, 1}, 2, 1);
    ASSERT_TRUE(layout.ok());
    auto keeper = connect(r / 2);
    ASSERT_TRUE(keeper.ok()) << keeper.status();
    trainer::SnapshotStore::remove_objects(**keeper, job_, *layout, r);
  }
  // The ranks the restart rebuilt when it resumed from the snapshot of step 4 or 6; -1 when it did not. With the
  // encoding in the background, the kill can catch step 6's commit written on some ranks and not on others: those
  // count as lost for step 6 (rebuilt when few enough, else step 4 is taken).
  static int rebuilt_from_4_or_6(const std::string& out) {
    for (const char* step : {"4", "6"}) {
      const std::string line = std::string("in-memory snapshot of step ") + step + " (";
      if (const size_t at = out.find(line); at != std::string::npos) return std::atoi(out.c_str() + at + line.size());
    }
    return -1;
  }
  std::string dir_, job_;
  const std::string binary_ = MEMTRAIN_BINARY_DIR "/memtrain";
};

TEST_F(MpiSnapshotKill, AKilledRankResumesFromTheSnapshotEvenWhenItsMemoryIsGone) {
  auto ref = mpirun("-np 4 " + binary_ + args("ref"));
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const std::vector<double> want = losses("ref");
  ASSERT_EQ(want.size(), 10u);
  // The keepers held nothing at the end, so they are gone: their sockets too (waited for without connecting, which
  // would keep them).
  for (int i = 0; i < 500 && !checkpoint::ShmSegment::list("memtrain." + job_ + ".").empty(); ++i) usleep(10000);
  EXPECT_TRUE(checkpoint::ShmSegment::list("memtrain." + job_ + ".").empty()) << "keepers or objects outlived the job";
  struct Case {
    std::vector<int> forgotten;  // ranks whose objects are removed after the kill
    int rebuilt;                 // at least these ranks rebuilt when resuming from a snapshot; -1: starts over
  };
  // The layout of {0, 0, 1, 1} with k = 2: groups {0, 2} and {1, 3}; forgetting 1 and 3 breaks the second.
    // The snapshot of step 6 may still have been encoding in the background when rank 1 was killed (then that of
  // step 4 is the newest complete one); the losses continue bit for bit from either.
  for (const Case& c : {Case{{}, 0}, Case{{1}, 1}, Case{{1, 3}, -1}}) {
    SCOPED_TRACE(::testing::PrintToString(c.forgotten));
    const std::string out = "killed";
    std::filesystem::remove_all(dir_ + "/" + out);
    const std::string killed = "-np 1 env MEMTRAIN_FAULT=train.step:7 " + binary_ + args(out);
    const std::string alive = "-np 1 " + binary_ + args(out);
    auto r = mpirun(alive + " : " + killed + " : " + alive + " : " + alive);
    ASSERT_NE(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("SIGKILL at train.step"), std::string::npos) << r.err;
    for (int rank : c.forgotten) forget(rank);
    auto restart = mpirun("-np 4 " + binary_ + args(out));
    ASSERT_EQ(restart.exit_code, 0) << restart.err;
    if (c.rebuilt >= 0) {
      EXPECT_GE(rebuilt_from_4_or_6(restart.out), c.rebuilt) << restart.out;
    } else {
      EXPECT_NE(restart.out.find("no in-memory snapshot newer than step 0 can be rebuilt"), std::string::npos)
          << restart.out;
    }
    EXPECT_EQ(losses(out), want);
  }
}

TEST_F(MpiSnapshotKill, KillingTheKeeperOfANodeLosesItsMemoryWhichParityRebuilds) {
  auto ref = mpirun("-np 4 " + binary_ + args("ref"));
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const std::vector<double> want = losses("ref");
  ASSERT_EQ(want.size(), 10u);
  // m = 2 over two simulated nodes of two ranks: groups {0, 2} and {1, 3}, each group's parity on the other two
  // ranks, so a whole node's memory (two data shards and two parity shards, one of each group) can be rebuilt.
  auto layout = checkpoint::SnapshotLayout::plan({0, 0, 1, 1}, 2, 2);
  ASSERT_TRUE(layout.ok());
  ASSERT_TRUE(layout->tolerates({false, false, true, true}));
  const std::string killed = "-np 1 env MEMTRAIN_FAULT=train.step:7 " + binary_ + args("killed", 2);
  const std::string alive = "-np 1 " + binary_ + args("killed", 2);
  auto r = mpirun(alive + " : " + killed + " : " + alive + " : " + alive);
  ASSERT_NE(r.exit_code, 0) << r.err;
  // The trainer is gone, the keepers hold its snapshots: kill -9 node 1's.
  auto keeper = connect(1);
  ASSERT_TRUE(keeper.ok()) << keeper.status() << " (the keeper should outlive the killed job)";
  const pid_t pid = (*keeper)->keeper_pid();
  keeper->reset();
  ASSERT_GT(pid, 0);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  for (int i = 0; i < 300 && connect(1).ok(); ++i) usleep(10000);
  auto restart = mpirun("-np 4 " + binary_ + args("killed", 2));
  ASSERT_EQ(restart.exit_code, 0) << restart.err;
  EXPECT_EQ(rebuilt_from_4_or_6(restart.out), 2) << restart.out;  // a third lost rank would break a group
  EXPECT_EQ(losses("killed"), want);
}

// `memtrain keeper CONFIG` serves the config's job on this node (simulated node N with --node) until --stop; bad
// arguments are refused with a reason; without snapshots it exits at once.
TEST(KeeperCli, RunsForTheConfigsJobUntilStopped) {
  const std::string dir = ::testing::TempDir() + "memtrain_keepercli_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const std::string job = "clitest" + std::to_string(getpid());
  const std::string cfg =
      "configs/default.toml --set snapshot.interval=2 --set snapshot.ranks_per_node=2 --set snapshot.job=" + job;
  const std::string socket = trainer::keeper_socket(job, "n1");
  auto started = testing::run_memtrain("keeper " + cfg + " --node 1 &", dir);  // the shell returns at once
  ASSERT_EQ(started.exit_code, 0) << started.err;
  std::unique_ptr<checkpoint::KeeperClient> client;
  for (int i = 0; i < 500 && client == nullptr; ++i) {
    if (auto c = checkpoint::KeeperClient::connect(socket); c.ok()) client = std::move(*c);
    usleep(10000);
  }
  ASSERT_NE(client, nullptr) << "no keeper at " << socket;
  ASSERT_TRUE(client->get("memtrain." + job + ".d2.0", 4096).ok());
  auto again = testing::run_memtrain("keeper " + cfg + " --node 1", dir);
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("a snapshot keeper already serves " + socket), std::string::npos) << again.err;
  auto stop = testing::run_memtrain("keeper " + cfg + " --node 1 --stop", dir);
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_FALSE(client->open("memtrain." + job + ".d2.0").ok()) << "the stopped keeper still answers";
  for (const auto& [args, reason] : std::vector<std::pair<std::string, std::string>>{
           {"keeper " + cfg, "say which with --node N"},
           {"keeper configs/default.toml --set snapshot.interval=2 --node 1", "--node is for simulated nodes"},
           {"keeper --socket /tmp/x.sock --node 1", "--node and --set go with a CONFIG"},
           {"keeper", "needs a CONFIG or --socket PATH"},
           {"keeper " + cfg + " --node 1 --stop", "no snapshot keeper at " + socket}}) {
    auto r = testing::run_memtrain(args, dir);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_NE(r.err.find(reason), std::string::npos) << args << ": " << r.err;
  }
  // Snapshots off: nothing to keep, so it says so and exits (launch/srun.sh starts keepers whatever the config).
  auto off = testing::run_memtrain("keeper configs/default.toml", dir);
  EXPECT_EQ(off.exit_code, 0) << off.err;
  EXPECT_NE(off.out.find("snapshots are off"), std::string::npos) << off.out;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace memtrain
