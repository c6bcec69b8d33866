// The bootstrap: launcher environment, MPI_Init_thread/MPI_Finalize and the world communicator.
#include "parallel/world.h"

#include <mpi.h>

#include <cstdlib>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "parallel/mpi_communicator.h"

namespace memtrain::parallel {

namespace {

absl::Status read_int(const std::function<const char*(const char*)>& getenv, const char* name, int* out) {
  const char* v = getenv(name);
  if (v == nullptr) return absl::OkStatus();  // keep the default
  if (!absl::SimpleAtoi(v, out) || *out < 0)
    return absl::InvalidArgumentError(absl::StrCat("environment variable ", name, "='", v, "' is not a rank/count"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LaunchInfo> detect_launch(const std::function<const char*(const char*)>& getenv) {
  LaunchInfo info;
  if (getenv("OMPI_COMM_WORLD_SIZE") != nullptr) {
    info.launcher = "openmpi";
    MEMTRAIN_RETURN_IF_ERROR(read_int(getenv, "OMPI_COMM_WORLD_RANK", &info.rank));
    MEMTRAIN_RETURN_IF_ERROR(read_int(getenv, "OMPI_COMM_WORLD_SIZE", &info.world_size));
    MEMTRAIN_RETURN_IF_ERROR(read_int(getenv, "OMPI_COMM_WORLD_LOCAL_RANK", &info.local_rank));
    MEMTRAIN_RETURN_IF_ERROR(read_int(getenv, "OMPI_COMM_WORLD_LOCAL_SIZE", &info.local_size));
  } else if (getenv("SLURM_PROCID") != nullptr || getenv("PMIX_RANK") != nullptr) {
    info.launcher = "slurm";
    MEMTRAIN_RETURN_IF_ERROR(read_int(getenv, "PMIX_RANK", &info.rank));
    MEMTRAIN_RETURN_IF_ERROR(read_int(getenv, "SLURM_PROCID", &info.rank));
    MEMTRAIN_RETURN_IF_ERROR(read_int(getenv, "SLURM_NTASKS", &info.world_size));
    MEMTRAIN_RETURN_IF_ERROR(read_int(getenv, "SLURM_LOCALID", &info.local_rank));
    MEMTRAIN_RETURN_IF_ERROR(read_int(getenv, "SLURM_NODEID", &info.node));
    // SLURM_NTASKS_PER_NODE is absent for uneven layouts; then the hostname count after MPI_Init decides.
    info.local_size = 0;
    MEMTRAIN_RETURN_IF_ERROR(read_int(getenv, "SLURM_NTASKS_PER_NODE", &info.local_size));
  }
  if (info.world_size < 1 || info.rank >= info.world_size)
    return absl::InvalidArgumentError(absl::StrCat(info.launcher, " launcher: rank ", info.rank,
                                                   " is not below the world size ", info.world_size));
  return info;
}

absl::StatusOr<std::unique_ptr<World>> World::init(int* argc, char*** argv, const WorldOptions& options) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return absl::FailedPreconditionError("World::init: MPI is already initialized (call it once)");
  MEMTRAIN_ASSIGN_OR_RETURN(LaunchInfo launch, detect_launch([](const char* n) { return std::getenv(n); }));
  int provided = 0;
  const int wanted = options.thread_multiple ? MPI_THREAD_MULTIPLE : MPI_THREAD_SERIALIZED;
  if (MPI_Init_thread(argc, argv, wanted, &provided) != MPI_SUCCESS) return absl::InternalError("MPI_Init_thread failed");
  if (provided < wanted) {
    MPI_Finalize();
    return absl::FailedPreconditionError(absl::StrCat("MPI provides thread level ", provided, ", memtrain needs ",
                                                      options.thread_multiple ? "MPI_THREAD_MULTIPLE" : "MPI_THREAD_SERIALIZED"));
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (launch.launcher != "none" && (rank != launch.rank || size != launch.world_size)) {
    MPI_Finalize();
    return absl::FailedPreconditionError(absl::StrCat("the ", launch.launcher, " launcher says rank ", launch.rank,
                                                      " of ", launch.world_size, " but MPI says rank ", rank, " of ",
                                                      size, " (an MPI library that does not match the launcher?)"));
  }
  launch.rank = rank;
  launch.world_size = size;
  std::unique_ptr<World> w(new World());  // from here on its destructor finalizes MPI

  // Node index and local size from the hostnames, numbered in order of first appearance; launchers disagree on
  // which of these they export.
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  MPI_Get_processor_name(host, &len);
  std::vector<char> all(static_cast<size_t>(size) * MPI_MAX_PROCESSOR_NAME);
  MPI_Allgather(host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, MPI_COMM_WORLD);
  std::map<std::string, int> node_of;
  std::vector<int> node_sizes;
  int my_node = 0;
  for (int k = 0; k < size; ++k) {
    std::string h(&all[static_cast<size_t>(k) * MPI_MAX_PROCESSOR_NAME]);
    auto [it, fresh] = node_of.emplace(h, static_cast<int>(node_of.size()));
    if (fresh) node_sizes.push_back(0);
    ++node_sizes[it->second];
    if (k == rank) my_node = it->second;
  }
  if (launch.launcher != "slurm") launch.node = my_node;
  if (launch.local_size <= 0 || launch.launcher == "none") launch.local_size = node_sizes[my_node];
  w->launch_ = launch;

  MPI_Comm dup = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &dup);  // our own context: user MPI traffic on MPI_COMM_WORLD can not match ours
  MEMTRAIN_ASSIGN_OR_RETURN(auto comm, MpiCommunicator::adopt(dup, "world", rank, options.timeout_s, w->unclean_));
  w->comm_ = std::move(comm);
  return w;
}

World::~World() {
  comm_.reset();
  if (unclean_->load()) {
    std::fprintf(stderr, "memtrain: a collective never completed; aborting MPI instead of finalizing\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
}

void World::abort(int exit_code) {
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::abort();  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

}  // namespace memtrain::parallel
