// Shared by the mpirun tests that train: one token dataset for all ranks, a tiny GPT-2 / LLaMA config over it,
// and the trainer's setup of one rank (mesh, model, data-parallel engine).
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "data/prepare.h"
#include "tests/mpi/mpi_test_env.h"
#include "trainer/config.h"
#include "trainer/distributed.h"
#include "trainer/session.h"
#include "trainer/train_loop.h"

namespace memtrain::parallel::testing {

// One directory for all ranks (rank 0's pid), with a token dataset rank 0 prepared.
inline const std::string& shared_dir() {
  static const std::string dir = [] {
    int32_t pid = static_cast<int32_t>(getpid());
    MEMTRAIN_CHECK_OK(world().comm().broadcast(&pid, 1, DType::kI32, 0));
    const std::string d = ::testing::TempDir() + "memtrain_mpi_" + std::to_string(pid);
    if (world().rank() == 0) {
      std::filesystem::remove_all(d);
      std::filesystem::create_directories(d);
      std::ofstream f(d + "/text.txt");
      for (int i = 0; i < 600; ++i) f << "line " << i << ": the quick brown fox " << (i * 7919 % 1000) << " jumps.\n";
      f.close();
      MEMTRAIN_CHECK_OK(data::prepare_text_dataset({d + "/text.txt"}, 0.1, d + "/data").status());
    }
    MEMTRAIN_CHECK_OK(world().comm().barrier());
    return d;
  }();
  return dir;
}

// 2 layers, 4 heads (LLaMA: 2 kv heads), width 32, 32 tokens, 50 steps of batch 2; `sets` override keys.
inline trainer::Config tiny_config(const std::string& arch, const std::string& out, std::vector<std::string> sets) {
  const std::string toml = "[model]\narch = \"" + arch + "\"\nn_layer = 2\nn_head = 4\nn_kv_head = " +
                           (arch == "llama" ? "2" : "0") + "\nn_embd = 32\nblock_size = 32\n"
                           "[data]\ntext = []\ndataset = \"" + shared_dir() + "/data\"\n"
                           "[train]\nmax_steps = 50\nbatch_size = 2\nlog_interval = 10\neval_interval = 25\n"
                           "eval_batches = 3\nthreads = 1\n"
                           "[optim]\nwarmup_steps = 5\ngrad_clip = 0.5\n"
                           "[output]\ndir = \"" + out + "\"\nsave_weights = true\nsamples = 0\n";
  auto cfg = trainer::parse_config(toml, "test.toml", sets);
  MEMTRAIN_CHECK_OK(cfg.status());
  return *cfg;
}

// Waits for `request` sleeping between tests, so a rank that waits leaves the cores to the ones that work.
inline void wait_sleeping(MPI_Request* request) {
  for (int done = 0; MPI_Test(request, &done, MPI_STATUS_IGNORE), !done;) usleep(2000);
}

// The single-process reference of a mesh run, trained once: rank 0 runs `cfg` alone (writing cfg.output.dir) while
// the others sleep, then every rank gets its losses. Under --oversubscribe eight ranks share two cores, and eight
// copies of the same reference run were most of the mpi tests' time.
inline absl::StatusOr<trainer::TrainResult> single_process_run(const trainer::Config& cfg) {
  trainer::TrainResult result;
  absl::Status status;
  double header[2] = {-1, 0};  // steps (-1: rank 0's run failed), final validation loss
  if (world().rank() == 0) {
    auto run = trainer::run_training(cfg, /*quiet=*/true);
    status = run.status();
    if (run.ok()) {
      result = *std::move(run);
      header[0] = static_cast<double>(result.losses.size());
      header[1] = result.final_val_loss;
    }
  }
  MPI_Request request;
  MPI_Ibcast(header, 2, MPI_DOUBLE, 0, MPI_COMM_WORLD, &request);
  wait_sleeping(&request);
  if (header[0] < 0) return world().rank() == 0 ? status : absl::InternalError("rank 0's single-process run failed");
  result.losses.resize(static_cast<size_t>(header[0]));
  result.final_val_loss = header[1];
  MPI_Ibcast(result.losses.data(), static_cast<int>(result.losses.size()), MPI_DOUBLE, 0, MPI_COMM_WORLD, &request);
  wait_sleeping(&request);
  return result;
}

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// The trainer's setup of one rank: mesh, model (this tp rank's part, registered, then allocated by the engine),
// engine.
struct EngineSetup {
  trainer::MeshRun run;
  std::unique_ptr<trainer::ModelBundle> bundle;
  std::unique_ptr<parallel::DataParallel> engine;
};
inline EngineSetup set_up(const trainer::Config& cfg) {
  auto run = trainer::create_mesh_run(world().comm(), cfg);
  MEMTRAIN_CHECK_OK(run.status());
  auto bundle = trainer::build_model(cfg, /*allocate=*/false, run->tp(), run->cp());
  MEMTRAIN_CHECK_OK(bundle.status());
  auto engine = trainer::create_data_parallel(cfg, *run, **bundle);
  MEMTRAIN_CHECK_OK(engine.status());
  return EngineSetup{std::move(*run), std::move(*bundle), std::move(*engine)};
}

}  // namespace memtrain::parallel::testing
