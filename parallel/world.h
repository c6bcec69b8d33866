// Bootstrap: who this process is (rank, world size, local rank, node) and the MPI lifetime. World is the only
// owner of MPI init/finalize and the only code that touches MPI_COMM_WORLD; everything else gets Communicator&.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"

namespace memtrain::parallel {

// What the launcher said, before MPI starts. launcher is "openmpi" (OMPI_COMM_WORLD_*), "slurm" (SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID; PMIX_RANK as a fallback for the rank) or "none" (one process).
struct LaunchInfo {
  std::string launcher = "none";
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_size = 1;
  int node = 0;  // node index; filled from the hostnames after MPI starts when the launcher does not say
};

// Reads the variables above through `getenv` (injectable for tests). An unparsable value is an error naming it.
absl::StatusOr<LaunchInfo> detect_launch(const std::function<const char*(const char*)>& getenv);

struct WorldOptions {
  double timeout_s = 300;  // deadline of the world communicator's calls; parallel.timeout_s in a run
  bool thread_multiple = false;  // MPI_THREAD_MULTIPLE: a background thread (asynchronous checkpoints) calls MPI too
};

class World {
 public:
  // MPI_Init_thread with MPI_THREAD_SERIALIZED: overlap comes from non-blocking calls that one thread at a time
  // drives (the compute thread, or later a communication thread), never from concurrent MPI calls; with
  // options.thread_multiple, MPI_THREAD_MULTIPLE, for the background checkpoint writer. With no
  // launcher MPI starts as a singleton of size 1. Then checks the launcher's rank and size against MPI's. Call once.
  static absl::StatusOr<std::unique_ptr<World>> init(int* argc, char*** argv, const WorldOptions& options = {});
  // Destroys the world communicator, then MPI_Finalize - or MPI_Abort(1) when a collective never completed and
  // its communicator was leaked (see mpi_communicator.h), since MPI_Finalize would then hang. Destroy every other
  // communicator (DeviceMesh) first.
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  const LaunchInfo& launch() const { return launch_; }
  int rank() const { return launch_.rank; }
  int size() const { return launch_.world_size; }
  Communicator& comm() { return *comm_; }
  // True once some communicator had to be leaked; the process will abort at exit.
  bool unclean() const { return unclean_->load(); }
  // Kills every rank (MPI_Abort): for a failure that leaves the others waiting forever.
  [[noreturn]] void abort(int exit_code);

 private:
  World() = default;
  LaunchInfo launch_;
  std::shared_ptr<std::atomic<bool>> unclean_ = std::make_shared<std::atomic<bool>>(false);
  std::unique_ptr<Communicator> comm_;
};

}  // namespace memtrain::parallel
