// In-memory snapshot figures (issue 11): the stall of one snapshot (SnapshotStore::take: the copy into shared
// memory; with snapshot.async the parity is computed in the background, timed separately as `encode`; median of
// N) against the median training step of the same config, hence the overhead at intervals 1, 10 and 100; the
// overhead measured end to end: the wall time of whole training runs with snapshots at intervals 1 and 10 (and twice
// without, whose spread shows the noise), whose difference over the difference in snapshots taken is what one
// snapshot costs a run, background work competing for the cores included; the parity encoding alone
// (encode_parity over this rank's snapshot) against ISA-L encoding the same bytes in one process (ec_encode_data of
// k shards, the raw rate), measured in the same run; and the time to restore the state from the newest snapshot
// (all ranks intact, and with rank 1's snapshot lost and rebuilt from parity) against resuming from a disk
// checkpoint of the same state. Prints from rank 0.
// Usage: mpirun -np D bench/snapshots CONFIG [--steps N] [--set section.key=value ...] (snapshot.k/m/async from
// --set).
#include <isa-l/erasure_code.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/mesh_bench_main.h"
#include "bench/run_figures.h"
#include "checkpoint/erasure_code.h"
#include "checkpoint/shm_segment.h"
#include "checkpoint/snapshot_parity.h"
#include "parallel/mpi_communicator.h"
#include "trainer/checkpointing.h"
#include "trainer/distributed.h"
#include "trainer/session.h"
#include "trainer/snapshots.h"
#include "trainer/train_loop.h"

using namespace memtrain;
using Clock = std::chrono::steady_clock;

static double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

static absl::Status run_bench(parallel::World& world, const trainer::Config& given, int steps) {
  trainer::Config cfg = given;
  trainer::apply_runtime(cfg, world.launch().local_size);
  // The step time of this config, without snapshots.
  trainer::Config train_cfg = cfg;
  train_cfg.snapshot.interval = 0;
  train_cfg.train.max_steps = std::max(6, steps);
  train_cfg.train.log_interval = 1;
  train_cfg.train.eval_interval = 0;
  train_cfg.output.save_weights = false;
  train_cfg.output.dir = cfg.output.dir + "/steps";
  MEMTRAIN_RETURN_IF_ERROR(trainer::run_training(train_cfg, world.comm(), 1, /*quiet=*/true).status());
  const double step_s = bench::read_run_figures(train_cfg.output.dir + "/metrics.jsonl").median_step_ms / 1000;

  int32_t pid = static_cast<int32_t>(getpid());  // rank 0's names the job on every rank
  MEMTRAIN_RETURN_IF_ERROR(world.comm().broadcast(&pid, 1, DType::kI32, 0));
  // Whole runs, without snapshots and with them every 1 and 10 steps: wall time.
  std::vector<double> run_s;
  const int64_t run_steps = std::max(20, steps);
  for (int64_t interval : {0, 1, 10, 0}) {  // the run without snapshots twice: its spread is the noise
    trainer::Config c = train_cfg;
    c.train.max_steps = run_steps;
    c.snapshot.interval = interval;
    c.snapshot.job = "bench" + std::to_string(pid) + "i" + std::to_string(interval);
    c.output.dir = cfg.output.dir + "/run" + std::to_string(interval);
    MEMTRAIN_RETURN_IF_ERROR(world.comm().barrier());
    const auto t0 = Clock::now();
    MEMTRAIN_RETURN_IF_ERROR(trainer::run_training(c, world.comm(), 1, /*quiet=*/true).status());
    run_s.push_back(since(t0));
  }

  cfg.snapshot.interval = 1;
  cfg.snapshot.job = "bench" + std::to_string(pid);
  cfg.train.resume = "auto";
  MEMTRAIN_ASSIGN_OR_RETURN(trainer::MeshRun run, trainer::create_mesh_run(world.comm(), cfg));
  MEMTRAIN_ASSIGN_OR_RETURN(auto bundle, trainer::build_model(cfg, /*allocate=*/false, run.tp(), run.cp()));
  MEMTRAIN_ASSIGN_OR_RETURN(auto engine, trainer::create_data_parallel(cfg, run, *bundle));
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<optim::Optimizer> opt,
                            trainer::create_sharded_optimizer(cfg, run, *bundle, *engine));
  const trainer::CheckpointScope scope{cfg, world.comm(), run, *bundle, *engine, *opt, /*quiet=*/true};
  MEMTRAIN_ASSIGN_OR_RETURN(auto store, trainer::SnapshotStore::create(scope));
  std::vector<double> take_s, background_s;
  for (int k = 1; k <= steps; ++k) {
    MEMTRAIN_RETURN_IF_ERROR(world.comm().barrier());
    const auto t0 = Clock::now();
    MEMTRAIN_RETURN_IF_ERROR(store->take(k));
    take_s.push_back(since(t0));
    const auto t1 = Clock::now();
    MEMTRAIN_RETURN_IF_ERROR(store->wait());
    background_s.push_back(since(t1));
  }
  // Parity alone, over a buffer of this rank's snapshot size; then ISA-L on k such shards in one process.
  const int64_t len = store->region_bytes();
  std::vector<uint8_t> shard(len, 7), scratch;
  std::vector<std::vector<uint8_t>> parity(store->layout().parity_held_by(world.rank()).size(),
                                           std::vector<uint8_t>(len));
  std::vector<uint8_t*> into;
  for (auto& p : parity) into.push_back(p.data());
  const MPI_Comm comm = dynamic_cast<parallel::MpiCommunicator&>(world.comm()).mpi_comm();
  std::vector<double> encode_s;
  for (int k = 0; k < steps; ++k) {
    MEMTRAIN_RETURN_IF_ERROR(world.comm().barrier());
    const auto t0 = Clock::now();
    MEMTRAIN_RETURN_IF_ERROR(checkpoint::encode_parity(comm, store->layout(), shard.data(), len, into.data(), scratch).status());
    encode_s.push_back(since(t0));
  }
  const int group_k = static_cast<int>(store->layout().groups()[0].members.size()), m = store->layout().m();
  double raw_s = 0;
  if (world.rank() == 0 && m > 0) {
    std::vector<std::vector<uint8_t>> data(group_k, std::vector<uint8_t>(len, 3)), out(m, std::vector<uint8_t>(len));
    std::vector<const uint8_t*> in;
    std::vector<uint8_t*> o;
    for (auto& d : data) in.push_back(d.data());
    for (auto& p : out) o.push_back(p.data());
    MEMTRAIN_ASSIGN_OR_RETURN(const checkpoint::ErasureCode code, checkpoint::ErasureCode::create(group_k, m));
    std::vector<double> s;
    for (int k = 0; k < steps; ++k) {
      const auto t0 = Clock::now();
      code.encode(len, in.data(), o.data());
      s.push_back(since(t0));
    }
    raw_s = median(s);
  }
  // Restoring: from the snapshot (intact; rank 1's lost), and from a checkpoint of the same state.
  MEMTRAIN_RETURN_IF_ERROR(world.comm().barrier());
  auto t_recover = Clock::now();
  MEMTRAIN_RETURN_IF_ERROR(store->recover(0).status());
  const double recover_s = since(t_recover);
  if (world.rank() == 1) {
    for (int slot = 0; slot < 2; ++slot) {
      auto seg = store->objects().open(trainer::SnapshotStore::data_name(store->job(), 1, slot));
      if (seg.ok()) seg->data()[0] ^= 1;  // its commit block: the snapshot no longer counts
    }
  }
  MEMTRAIN_RETURN_IF_ERROR(world.comm().barrier());
  t_recover = Clock::now();
  MEMTRAIN_RETURN_IF_ERROR(store->recover(0).status());
  const double rebuild_s = since(t_recover);
  MEMTRAIN_ASSIGN_OR_RETURN(auto saver, trainer::CheckpointSaver::create(scope));
  MEMTRAIN_RETURN_IF_ERROR(saver->save(steps));
  MEMTRAIN_RETURN_IF_ERROR(world.comm().barrier());
  const auto t_read = Clock::now();
  MEMTRAIN_RETURN_IF_ERROR(trainer::resume_from_checkpoint(scope).status());
  const double read_s = since(t_read);
  MEMTRAIN_RETURN_IF_ERROR(store->finish());
  if (world.rank() != 0) return absl::OkStatus();
  const double take = median(take_s), mib = static_cast<double>(len) / (1 << 20);
  // What one more snapshot costs a run, set-up costs cancelled: interval 1 takes run_steps snapshots, 10 a tenth.
  const double per_snapshot_s = (run_s[1] - run_s[2]) / static_cast<double>(run_steps - run_steps / 10);
  std::printf("%s %lld params, %d ranks, ZeRO-%lld, k %d m %d%s: snapshot %.1f MiB per rank | step %.3f s | stall "
              "%.3f s, encode %.3f s %s (medians of %d): overhead %.1f%% at interval 1, %.2f%% at 10, %.3f%% at 100 | "
              "whole %lld-step runs: none %.2f / %.2f s, interval 1 %.2f s, 10 %.2f s: %.3f s per snapshot = "
              "%.1f%% at interval 1, %.2f%% at 10 | parity %.3f s = %.0f "
              "MiB/s per rank; ISA-L alone %.0f MiB/s (k x %.1f MiB in %.4f s) | restore from snapshot %.3f s, with "
              "rank 1 rebuilt %.3f s, from the checkpoint %.3f s\n",
              cfg.model.arch.c_str(), static_cast<long long>(bundle->params.numel()), world.size(),
              static_cast<long long>(cfg.zero.stage), group_k, m, cfg.snapshot.async ? ", async" : "", mib, step_s,
              take, median(background_s), cfg.snapshot.async ? "in the background" : "(none after the stall)", steps,
              100 * take / step_s, 100 * take / (10 * step_s), 100 * take / (100 * step_s),
              static_cast<long long>(run_steps), run_s[0], run_s[3], run_s[1], run_s[2], per_snapshot_s,
              100 * per_snapshot_s / step_s, 10 * per_snapshot_s / step_s, median(encode_s), mib / median(encode_s),
              raw_s > 0 ? group_k * mib / raw_s : 0.0, mib, raw_s, recover_s, rebuild_s, read_s);
  return absl::OkStatus();
}

int main(int argc, char** argv) { return bench::mesh_bench_main(argc, argv, "snapshots", run_bench, /*thread_multiple=*/true); }
