// Checkpoint figures: the training stall of a synchronous save (every rank writing its part of one parallel-HDF5
// file, fsync, rename; median of N saves) and its write rate; the stall of an asynchronous save (the copy to host
// memory; median of N) and how long its background write takes; the time to read it back (resume); and the raw
// sequential write rate of the same disk measured in the same run (rank 0 writes as many bytes with write() in
// 8 MiB pieces and fsyncs). Prints one line from rank 0.
// Usage: [mpirun -np D] bench/checkpoint CONFIG [--steps N] [--set section.key=value ...]; output.dir names the disk.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/mesh_bench_main.h"
#include "core/file_io.h"
#include "trainer/checkpointing.h"
#include "trainer/config.h"
#include "trainer/distributed.h"
#include "trainer/session.h"

using namespace memtrain;
using Clock = std::chrono::steady_clock;

static double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Seconds to write `bytes` sequentially to `path` and fsync it.
static absl::StatusOr<double> raw_write_seconds(const std::string& path, int64_t bytes) {
  std::vector<char> buf(8 << 20, 'x');
  const auto t0 = Clock::now();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error(path, "cannot open", errno);
  for (int64_t done = 0; done < bytes;) {
    const ssize_t n = ::write(fd, buf.data(), static_cast<size_t>(std::min<int64_t>(buf.size(), bytes - done)));
    if (n <= 0) {
      ::close(fd);
      return errno_error(path, "cannot write", errno);
    }
    done += n;
  }
  ::fsync(fd);
  ::close(fd);
  const double s = since(t0);
  ::unlink(path.c_str());
  return s;
}

static absl::Status run_bench(parallel::World& world, const trainer::Config& given, int steps) {
  trainer::Config cfg = given;
  cfg.train.checkpoint_interval = 1;
  cfg.train.keep_checkpoints = 1;
  trainer::apply_runtime(cfg, world.launch().local_size);
  MEMTRAIN_ASSIGN_OR_RETURN(trainer::MeshRun run, trainer::create_mesh_run(world.comm(), cfg));
  MEMTRAIN_ASSIGN_OR_RETURN(auto bundle, trainer::build_model(cfg, /*allocate=*/false, run.tp(), run.cp()));
  MEMTRAIN_ASSIGN_OR_RETURN(auto engine, trainer::create_data_parallel(cfg, run, *bundle));
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<optim::Optimizer> opt,
                            trainer::create_sharded_optimizer(cfg, run, *bundle, *engine));
  const trainer::CheckpointScope scope{cfg, world.comm(), run, *bundle, *engine, *opt, /*quiet=*/true};
  MEMTRAIN_ASSIGN_OR_RETURN(auto sync, trainer::CheckpointSaver::create(scope));
  std::vector<double> save_s, async_stall_s, async_write_s;
  for (int k = 1; k <= steps; ++k) {
    MEMTRAIN_RETURN_IF_ERROR(world.comm().barrier());
    const auto t0 = Clock::now();
    MEMTRAIN_RETURN_IF_ERROR(sync->save(k));
    save_s.push_back(since(t0));
  }
  trainer::Config async_cfg = cfg;
  async_cfg.train.checkpoint_async = true;
  const trainer::CheckpointScope async_scope{async_cfg, world.comm(), run, *bundle, *engine, *opt, /*quiet=*/true};
  MEMTRAIN_ASSIGN_OR_RETURN(auto async, trainer::CheckpointSaver::create(async_scope));
  for (int k = steps + 1; k <= 2 * steps; ++k) {
    MEMTRAIN_RETURN_IF_ERROR(world.comm().barrier());
    const auto t0 = Clock::now();
    MEMTRAIN_RETURN_IF_ERROR(async->save(k));
    async_stall_s.push_back(async->last_stall_s());
    MEMTRAIN_RETURN_IF_ERROR(async->wait());
    async_write_s.push_back(since(t0));
  }
  std::sort(async_stall_s.begin(), async_stall_s.end());
  std::sort(async_write_s.begin(), async_write_s.end());
  std::sort(save_s.begin(), save_s.end());
  const std::string file = (std::filesystem::path(cfg.output.dir) / "checkpoints" /
                            absl::StrFormat("step_%08d.h5", 2 * steps)).string();
  const int64_t bytes = static_cast<int64_t>(std::filesystem::file_size(file));
  trainer::Config resume = cfg;
  resume.train.resume = "auto";
  const trainer::CheckpointScope reader{resume, world.comm(), run, *bundle, *engine, *opt, /*quiet=*/true};
  MEMTRAIN_RETURN_IF_ERROR(world.comm().barrier());
  const auto t_read = Clock::now();
  MEMTRAIN_RETURN_IF_ERROR(trainer::resume_from_checkpoint(reader).status());
  const double read_s = since(t_read);
  if (world.rank() != 0) return absl::OkStatus();
  MEMTRAIN_ASSIGN_OR_RETURN(const double raw_s, raw_write_seconds(cfg.output.dir + "/raw_write.bin", bytes));
  const double median = save_s[save_s.size() / 2], mib = static_cast<double>(bytes) / (1 << 20);
  std::printf("%s %lld params, %d ranks, ZeRO-%lld: checkpoint %.1f MiB | sync save stall %.3f s (median of %d) = "
              "%.0f MiB/s | async save stall %.3f s, written in %.3f s | read %.3f s | raw sequential write %.0f "
              "MiB/s, sync save at %.0f%% of it\n",
              cfg.model.arch.c_str(), static_cast<long long>(bundle->params.numel()), world.size(),
              static_cast<long long>(cfg.zero.stage), mib, median, steps, mib / median,
              async_stall_s[async_stall_s.size() / 2], async_write_s[async_write_s.size() / 2], read_s, mib / raw_s,
              100.0 * raw_s / median);
  return absl::OkStatus();
}

int main(int argc, char** argv) {
  return bench::mesh_bench_main(argc, argv, "checkpoint", run_bench, /*thread_multiple=*/true);
}
