// The snapshot keeper: a small process per node and job that owns the job's snapshot memory on that node. Each
// object is an anonymous shared-memory file (memfd) the keeper creates and hands to the trainer's ranks over a
// Unix socket (mode 0600); a rank maps it and writes its snapshot there. Because the keeper holds every object, a
// rank that crashes or is killed leaves its snapshot behind for the restart; because nothing has a name in the
// file system, nothing leaks: when the keeper exits (asked to, idle too long, or killed with its node's trainer
// ranks) the kernel frees the memory, as a node failure would.
//
// It exits after `idle_timeout_s` without any connected rank (a failed job's snapshots wait that long for the
// restart), at once when asked to stop, and when no rank is connected and it holds nothing (the job removed its
// snapshots at a successful end).
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "checkpoint/shm_segment.h"

namespace memtrain::checkpoint {

// Serves on `socket_path` until it exits (see above); the socket file is removed then. AlreadyExists when a keeper
// answers there already (a stale socket of a dead one is replaced). `ready` runs once the socket accepts clients.
absl::Status run_keeper(const std::string& socket_path, double idle_timeout_s,
                        const std::function<void()>& ready = nullptr);

// Starts `binary keeper --socket PATH --idle-timeout S` detached from the caller (its own session, stdin/stdout/
// stderr on /dev/null, no other descriptor inherited), so it outlives the caller and its launcher.
absl::Status spawn_keeper(const std::string& binary, const std::string& socket_path, double idle_timeout_s);

// A connection to a keeper; while it is open the keeper counts the caller as alive.
class KeeperClient : public ObjectSource {
 public:
  // Unavailable when no keeper answers at `socket_path`.
  static absl::StatusOr<std::unique_ptr<KeeperClient>> connect(const std::string& socket_path);
  ~KeeperClient() override;

  absl::StatusOr<ShmSegment> get(const std::string& name, int64_t bytes) override;
  absl::StatusOr<ShmSegment> open(const std::string& name) override;
  void drop(const std::string& name) override;
  // Asks the keeper to free everything and exit.
  absl::Status stop();
  pid_t keeper_pid() const { return pid_; }

 private:
  KeeperClient(int fd, pid_t pid) : fd_(fd), pid_(pid) {}
  // One request and its reply (with a descriptor for get/open).
  absl::StatusOr<ShmSegment> call(int op, const std::string& name, int64_t bytes);
  int fd_;
  pid_t pid_;
};

}  // namespace memtrain::checkpoint
