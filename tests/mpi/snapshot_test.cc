// In-memory snapshots in training: a run that stopped after step 6 with snapshots every 2 steps left behind in
// shared memory continues from step 6 when started again, and its losses for steps 7-10 equal an uninterrupted
// run's bit for bit, also when the snapshots of up to snapshot.m ranks (their data and the parity they held) were
// lost in between (rebuilt from parity) or one rank's snapshot has a flipped byte (caught by its checksum, rebuilt
// likewise); with m + 1 lost the run starts over (no checkpoint), again equal to the
// uninterrupted run. AdamW; nodes simulated as halves.
// The snapshots are held by the nodes' keeper processes (snapshot.keeper) and encoded in the background
// (snapshot.async), and once as named /dev/shm objects encoded within the step; on dp, tp, pp and cp meshes.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

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

enum class Loss { kNone, kM, kMPlus1, kCorrupted };
struct SnapshotCase {
  const char* name;
  Loss loss;  // the snapshots of no rank, m ranks, m + 1 ranks are lost, or the last rank's newest one corrupted
  const char* arch;
  std::vector<std::string> sets;  // the mesh and ZeRO stage, and snapshot.keeper/async where not the defaults
};
void PrintTo(const SnapshotCase& c, std::ostream* os) { *os << c.name; }

class MpiSnapshots : public ::testing::TestWithParam<SnapshotCase> {};

TEST_P(MpiSnapshots, ARestartContinuesFromTheNewestSnapshotBitForBit) {
  const SnapshotCase& c = GetParam();
  const int world_size = world().size(), rank = world().rank();
  if (world_size < 2) GTEST_SKIP() << "needs two ranks";
  const int k = world_size / 2, m = std::min(2, k);
  const int lose = c.loss == Loss::kM ? m : c.loss == Loss::kMPlus1 ? m + 1 : 0;
  // The same on every rank (rank 0's process id ends shared_dir()).
  const std::string job = "mpitest" + shared_dir().substr(shared_dir().rfind('_') + 1) + c.name;
  std::vector<std::string> common = {"parallel.dp=-1", "optim.decay_steps=10", "train.eval_interval=0"};
  common.insert(common.end(), c.sets.begin(), c.sets.end());
  std::vector<std::string> whole = common, snap = common;
  whole.push_back("train.max_steps=10");
  for (std::string s : std::vector<std::string>{"snapshot.interval=2", "snapshot.k=" + std::to_string(k), "snapshot.m=" + std::to_string(m),
                        "snapshot.ranks_per_node=" + std::to_string(std::max(1, world_size / 2)),
                        "snapshot.job=" + job, "snapshot.keep_at_exit=true", "train.resume=auto"})
    snap.push_back(s);
  const std::string dir = shared_dir() + "/snap_" + job;
  auto uninterrupted = trainer::run_training(tiny_config(c.arch, dir + "_whole", whole), world().comm(), 1, true);
  ASSERT_TRUE(uninterrupted.ok()) << uninterrupted.status();
  std::vector<std::string> first = snap;
  first.push_back("train.max_steps=6");
  first.push_back("train.log_interval=1");
  auto stopped = trainer::run_training(tiny_config(c.arch, dir, first), world().comm(), 1, true);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  if (rank == 0 && c.loss == Loss::kM) {
    // metrics.jsonl counts rank 0's snapshot traffic, X = m parity products per snapshot (every rank is in a group),
    // once a snapshot is encoded. A step's line comes before its snapshot (steps 2, 4, 6): within the step, the
    // lines read 0 0 X X 2X 2X; in the background, step 2's is counted by step 5's line at the latest.
    std::vector<int64_t> sent;
    std::ifstream f(dir + "/metrics.jsonl");
    for (std::string line; std::getline(f, line);) {
      const auto j = nlohmann::json::parse(line);
      if (j.contains("loss")) sent.push_back(j.value("snapshot_bytes", int64_t{-1}));
    }
    ASSERT_EQ(sent.size(), 6u);
    const int64_t x = sent[4];
    EXPECT_GT(x, 0);
    if (c.sets.back() == "snapshot.async=false") {
      EXPECT_EQ(sent, (std::vector<int64_t>{0, 0, x / 2, x / 2, x, x}));
      EXPECT_EQ(x / 2 % m, 0);
    } else {
      EXPECT_EQ(sent[1], 0);
      EXPECT_TRUE(std::is_sorted(sent.begin(), sent.end()));
    }
  }

  std::vector<int> nodes(world_size);
  for (int r = 0; r < world_size; ++r) nodes[r] = r / std::max(1, world_size / 2);
  auto layout = checkpoint::SnapshotLayout::plan(nodes, k, m);
  ASSERT_TRUE(layout.ok());
  // The lost ranks: from the last, a rank of each group in turn (so m + 1 of them break some group).
  // This rank's node's objects.
  std::unique_ptr<checkpoint::ObjectSource> objects = std::make_unique<checkpoint::DevShmObjects>();
  const trainer::Config cfg = tiny_config(c.arch, dir, snap);
  if (cfg.snapshot.keeper) {
    auto client = trainer::connect_keeper(trainer::keeper_socket(job, trainer::snapshot_node(cfg.snapshot, rank)),
                                          cfg.snapshot, /*start=*/false);
    ASSERT_TRUE(client.ok()) << client.status();
    objects = std::move(*client);
  }
  ASSERT_TRUE(world().comm().barrier().ok());
  std::vector<bool> lost(world_size, false);
  for (int i = 0; i < lose; ++i) lost[world_size - 1 - i] = true;
  if (lost[rank]) trainer::SnapshotStore::remove_objects(*objects, job, *layout, rank);
  if (c.loss == Loss::kCorrupted && rank == world_size - 1) {  // step 6 sits in slot (6 / 2) % 2 = 1, after a 64-byte block
    auto s = objects->open(trainer::SnapshotStore::data_name(job, rank, 1));
    ASSERT_TRUE(s.ok()) << s.status();
    s->data()[64 + 1000] ^= 0x10;
  }
  ASSERT_TRUE(world().comm().barrier().ok());

  std::vector<std::string> second = snap;
  second.push_back("train.max_steps=10");
  auto resumed = trainer::run_training(tiny_config(c.arch, dir, second), world().comm(), 1, true);
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

std::string case_name(const ::testing::TestParamInfo<SnapshotCase>& info) { return info.param.name; }

// Every case's mesh keeps state that differs between ranks (ZeRO-2/3 shards, tp and pp parts).
INSTANTIATE_TEST_SUITE_P(
    Cases, MpiSnapshots,
    ::testing::Values(SnapshotCase{"none", Loss::kNone, "gpt2", {"zero.stage=2"}},
                      SnapshotCase{"m_ranks", Loss::kM, "gpt2", {"zero.stage=2"}},
                      SnapshotCase{"m_plus_1", Loss::kMPlus1, "gpt2", {"zero.stage=2"}},
                      SnapshotCase{"corrupted", Loss::kCorrupted, "gpt2", {"zero.stage=2"}},
                      SnapshotCase{"m_ranks_dev_shm_sync", Loss::kM, "gpt2",
                                   {"zero.stage=2", "snapshot.keeper=false", "snapshot.async=false"}},
                      SnapshotCase{"tp2_m_ranks", Loss::kM, "gpt2",
                                   {"parallel.tp=2", "parallel.sequence_parallel=true", "zero.stage=1"}},
                      SnapshotCase{"pp2_m_ranks", Loss::kM, "llama", {"parallel.pp=2", "train.grad_accum=4"}},
                      SnapshotCase{"cp2_zero3_m_ranks", Loss::kM, "llama", {"parallel.cp=2", "zero.stage=3"}}),
    case_name);

}  // namespace
}  // namespace memtrain
