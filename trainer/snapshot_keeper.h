// Where a run's snapshot objects live on each node (snapshot.keeper): with the keeper, the node's keeper process
// for the job (checkpoint/shm_keeper.h), reached at /dev/shm/memtrain.JOB.NODE.keeper and started by the node's
// first rank when none answers; without it, named objects in /dev/shm. Also what `memtrain keeper` and the tests
// use to find a job's keeper.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "checkpoint/shm_keeper.h"
#include "trainer/config.h"

namespace memtrain::trainer {

// snapshot.job, or (when empty) a name derived from output.dir: the same on every rank and every restart.
std::string snapshot_job(const Config& cfg);
// The node rank `rank` counts as, by name: "nN" with snapshot.ranks_per_node, else this machine's host name.
std::string snapshot_node(const SnapshotConfig& sc, int rank);
std::string keeper_socket(const std::string& job, const std::string& node);
// The keeper at `socket`; when none answers and `start`, one is started (as `memtrain keeper`, the binary from
// $MEMTRAIN_BINARY or found next to this program) and waited for.
absl::StatusOr<std::unique_ptr<checkpoint::KeeperClient>> connect_keeper(const std::string& socket,
                                                                         const SnapshotConfig& sc, bool start);

}  // namespace memtrain::trainer
