#include "trainer/snapshot_keeper.h"

#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/checksum.h"
#include "core/status.h"

namespace memtrain::trainer {
namespace {

// The memtrain binary to start as the keeper: this program when it is memtrain; a test or bench program finds it
// in its own directory or the one above (build/tests, build/bench -> build).
absl::StatusOr<std::string> memtrain_binary() {
  if (const char* env = std::getenv("MEMTRAIN_BINARY"); env != nullptr && *env != '\0') return std::string(env);
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    if (self.filename() == "memtrain") return self.string();
    for (const auto& dir : {self.parent_path(), self.parent_path().parent_path()}) {
      if (std::filesystem::exists(dir / "memtrain", ec)) return (dir / "memtrain").string();
    }
  }
  return absl::NotFoundError("the memtrain binary, which starts the snapshot keeper, was not found: set "
                             "MEMTRAIN_BINARY, or snapshot.keeper = false");
}

}  // namespace

std::string snapshot_job(const Config& cfg) {
  if (!cfg.snapshot.job.empty()) return cfg.snapshot.job;
  const std::string dir = std::filesystem::absolute(cfg.output.dir).lexically_normal().string();
  return absl::StrFormat("%016x", xxhash64(dir.data(), dir.size()));
}

std::string snapshot_node(const SnapshotConfig& sc, int rank) {
  if (sc.ranks_per_node > 0) return absl::StrCat("n", rank / sc.ranks_per_node);
  char host[65] = {};
  gethostname(host, sizeof host - 1);
  std::string name;
  for (const char* c = host; *c != '\0' && name.size() < 40; ++c)
    name += std::isalnum(static_cast<unsigned char>(*c)) || *c == '-' ? *c : '_';
  return name;
}

std::string keeper_socket(const std::string& job, const std::string& node) {
  return absl::StrCat("/dev/shm/memtrain.", job, ".", node, ".keeper");
}

absl::StatusOr<std::unique_ptr<checkpoint::KeeperClient>> connect_keeper(const std::string& socket,
                                                                         const SnapshotConfig& sc, bool start) {
  auto client = checkpoint::KeeperClient::connect(socket);
  if (client.ok() || !start || client.status().code() != absl::StatusCode::kUnavailable) return client;
  MEMTRAIN_ASSIGN_OR_RETURN(const std::string binary, memtrain_binary());
  MEMTRAIN_RETURN_IF_ERROR(checkpoint::spawn_keeper(binary, socket, static_cast<double>(sc.keeper_timeout_s)));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!client.ok() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    client = checkpoint::KeeperClient::connect(socket);
  }
  if (!client.ok())
    return absl::UnavailableError(absl::StrCat("the snapshot keeper started as '", binary, " keeper' did not answer at ",
                                               socket, " within 10 s"));
  return client;
}

}  // namespace memtrain::trainer
