// In-memory snapshots in training: a run that stopped after step 6 with snapshots every 2 steps left behind in
// shared memory continues from step 6 when started again, and its losses for steps 7-10 equal an uninterrupted
// run's bit for bit, also when the snapshots of up to snapshot.m ranks (their data and the parity they held) were
// lost in between (rebuilt from parity) or one rank's snapshot has a flipped byte (caught by its checksum, rebuilt
// likewise); with m + 1 lost the run starts over (no checkpoint), again equal to the
// uninterrupted run. ZeRO-2 over all ranks (every rank holds different state), AdamW; nodes simulated as halves.
// The snapshots are held by the nodes' keeper processes (snapshot.keeper), and once as named /dev/shm objects.
#include <gtest/gtest.h>

#include "checkpoint/shm_segment.h"
#include "checkpoint/snapshot_layout.h"
#include "tests/mpi/training_fixture.h"
#include "trainer/snapshot_keeper.h"
#include "trainer/snapshots.h"
#include "trainer/train_loop.h"

namespace memtrain {
namespace {
using parallel::testing::shared_dir;
using parallel::testing::tiny_config;
using parallel::testing::world;

// 0, 1, 2: the snapshots of no rank, m ranks, m + 1 ranks are lost; 3: the last rank's newest one is corrupted;
// 4: as 1, in /dev/shm without keepers.
class MpiSnapshots : public ::testing::TestWithParam<int> {};

TEST_P(MpiSnapshots, ARestartContinuesFromTheNewestSnapshotBitForBit) {
  const int world_size = world().size(), rank = world().rank();
  if (world_size < 2) GTEST_SKIP() << "needs two ranks";
  const int k = world_size / 2, m = std::min(2, k);
  const int lose = GetParam() == 0 || GetParam() == 3 ? 0 : GetParam() == 2 ? m + 1 : m;
  const bool keeper = GetParam() != 4;
  // The same on every rank (rank 0's process id ends shared_dir()).
  const std::string job = "mpitest" + shared_dir().substr(shared_dir().rfind('_') + 1) + "n" + std::to_string(GetParam());
  const std::vector<std::string> common = {"parallel.dp=-1", "zero.stage=2", "optim.decay_steps=10",
                                           "train.eval_interval=0"};
  std::vector<std::string> whole = common, snap = common;
  whole.push_back("train.max_steps=10");
  for (std::string s : std::vector<std::string>{"snapshot.interval=2", "snapshot.k=" + std::to_string(k), "snapshot.m=" + std::to_string(m),
                        "snapshot.ranks_per_node=" + std::to_string(std::max(1, world_size / 2)),
                        "snapshot.job=" + job, "snapshot.keep_at_exit=true", "train.resume=auto",
                        std::string("snapshot.keeper=") + (keeper ? "true" : "false")})
    snap.push_back(s);
  const std::string dir = shared_dir() + "/snap_" + job;
  auto uninterrupted = trainer::run_training(tiny_config("gpt2", dir + "_whole", whole), world().comm(), 1, true);
  ASSERT_TRUE(uninterrupted.ok()) << uninterrupted.status();
  std::vector<std::string> first = snap;
  first.push_back("train.max_steps=6");
  auto stopped = trainer::run_training(tiny_config("gpt2", dir, first), world().comm(), 1, true);
  ASSERT_TRUE(stopped.ok()) << stopped.status();

  std::vector<int> nodes(world_size);
  for (int r = 0; r < world_size; ++r) nodes[r] = r / std::max(1, world_size / 2);
  auto layout = checkpoint::SnapshotLayout::plan(nodes, k, m);
  ASSERT_TRUE(layout.ok());
  // The lost ranks: from the last, a rank of each group in turn (so m + 1 of them break some group).
  // This rank's node's objects.
  std::unique_ptr<checkpoint::ObjectSource> objects = std::make_unique<checkpoint::DevShmObjects>();
  if (keeper) {
    auto cfg = tiny_config("gpt2", dir, snap);
    auto client = trainer::connect_keeper(trainer::keeper_socket(job, trainer::snapshot_node(cfg.snapshot, rank)),
                                          cfg.snapshot, /*start=*/false);
    ASSERT_TRUE(client.ok()) << client.status();
    objects = std::move(*client);
  }
  ASSERT_TRUE(world().comm().barrier().ok());
  std::vector<bool> lost(world_size, false);
  for (int i = 0; i < lose; ++i) lost[world_size - 1 - i] = true;
  if (lost[rank]) trainer::SnapshotStore::remove_objects(*objects, job, *layout, rank);
  if (GetParam() == 3 && rank == world_size - 1) {  // step 6 sits in slot (6 / 2) % 2 = 1, after a 64-byte block
    auto s = objects->open(trainer::SnapshotStore::data_name(job, rank, 1));
    ASSERT_TRUE(s.ok()) << s.status();
    s->data()[64 + 1000] ^= 0x10;
  }
  ASSERT_TRUE(world().comm().barrier().ok());

  std::vector<std::string> second = snap;
  second.push_back("train.max_steps=10");
  auto resumed = trainer::run_training(tiny_config("gpt2", dir, second), world().comm(), 1, true);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  ASSERT_EQ(uninterrupted->losses.size(), 10u);
  if (layout->tolerates(lost)) {
    ASSERT_EQ(resumed->losses.size(), 4u) << "the run did not continue from step 6";
    for (int i = 0; i < 4; ++i) EXPECT_EQ(resumed->losses[i], uninterrupted->losses[6 + i]) << "step " << 7 + i;
  } else {
    ASSERT_EQ(resumed->losses.size(), 10u) << "the run should have started over";
    for (int i = 0; i < 10; ++i) EXPECT_EQ(resumed->losses[i], uninterrupted->losses[i]) << "step " << i + 1;
  }
  trainer::SnapshotStore::remove_objects(*objects, job, *layout, rank);
}

std::string loss_name(const ::testing::TestParamInfo<int>& info) {
  static const char* const kNames[] = {"none", "m_ranks", "m_plus_1", "corrupted", "m_ranks_dev_shm"};
  return kNames[info.param];
}

INSTANTIATE_TEST_SUITE_P(Losses, MpiSnapshots, ::testing::Values(0, 1, 2, 3, 4), loss_name);

}  // namespace
}  // namespace memtrain
