#include "trainer/snapshots.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "checkpoint/snapshot_parity.h"
#include "core/checksum.h"
#include "parallel/mpi_communicator.h"
#include "trainer/snapshot_keeper.h"

namespace memtrain::trainer {

namespace {

constexpr uint64_t kMagic = 0x31304e5341'4e534dULL;  // "MSNASN01", any fixed value
constexpr int64_t kCommitBytes = 64;                    // before the encoded region: not part of the code
constexpr int64_t kHeaderBytes = 64;                    // the encoded region's first bytes

struct Commit {  // at offset 0 of every object
  uint64_t magic;
  int64_t step;       // -1: being written
  uint64_t checksum;  // XXH64 of the region (data) or of the parity bytes
};

struct Header {  // at the start of a data object's encoded region
  uint64_t magic;
  int64_t step;
  int64_t optimizer_steps;
  int64_t state_bytes;
};

MPI_Comm mpi_of(parallel::Communicator& world) {
  if (world.size() == 1) return MPI_COMM_NULL;
  auto* mpi = dynamic_cast<parallel::MpiCommunicator*>(&world);
  MEMTRAIN_CHECK_MSG(mpi != nullptr, "a multi-rank world is an MPI communicator");
  return mpi->mpi_comm();
}

Commit read_commit(const checkpoint::ShmSegment& s) {
  Commit c{};
  if (s.bytes() >= kCommitBytes) std::memcpy(&c, s.data(), sizeof c);
  return c;
}

void write_commit(checkpoint::ShmSegment& s, int64_t step, uint64_t checksum) {
  const Commit c{kMagic, step, checksum};
  std::memcpy(s.data(), &c, sizeof c);
}

// The step an object holds intact, or -1.
int64_t intact_step(const checkpoint::ShmSegment& s) {
  const Commit c = read_commit(s);
  if (c.magic != kMagic || c.step < 0) return -1;
  const uint64_t sum = xxhash64(s.data() + kCommitBytes, static_cast<size_t>(s.bytes() - kCommitBytes));
  return sum == c.checksum ? c.step : -1;
}

}  // namespace

struct SnapshotStore::Runs {
  std::vector<std::pair<char*, int64_t>> runs;  // (data, bytes)
  optim::Optimizer::CheckpointStates states;    // keeps staged optimizer arrays alive
  int64_t bytes = 0;
};

absl::StatusOr<std::unique_ptr<SnapshotStore>> SnapshotStore::create(const CheckpointScope& scope) {
  const SnapshotConfig& sc = scope.cfg.snapshot;
  if (sc.interval == 0) return std::unique_ptr<SnapshotStore>();
  std::unique_ptr<SnapshotStore> store(new SnapshotStore(scope));
  store->rank_ = scope.world.rank();
  store->world_ = scope.world.size();
  store->job_ = snapshot_job(scope.cfg);
  // The nodes: host names (or snapshot.ranks_per_node), numbered in order of first appearance.
  std::vector<int> node_of(store->world_);
  if (sc.ranks_per_node > 0) {
    for (int r = 0; r < store->world_; ++r) node_of[r] = static_cast<int>(r / sc.ranks_per_node);
  } else {
    char host[64] = {};
    gethostname(host, sizeof host - 1);
    std::vector<char> all(64 * store->world_);
    MEMTRAIN_RETURN_IF_ERROR(scope.world.all_gather(host, all.data(), 64, DType::kU8));
    std::map<std::string, int> ids;
    for (int r = 0; r < store->world_; ++r) {
      const std::string h(all.data() + 64 * r);
      node_of[r] = ids.emplace(h, static_cast<int>(ids.size())).first->second;
    }
  }
  MEMTRAIN_RETURN_IF_ERROR(store->connect_objects(node_of));
  if (sc.m > 0 && store->world_ == 1)
    return config_error("snapshot.m", "parity is held by other ranks; a single process takes snapshot.m = 0");
  // Parity lives outside its group, so with parity a group has at most world - 1 members.
  const int k = static_cast<int>(std::min<int64_t>(sc.k, sc.m > 0 ? store->world_ - 1 : store->world_));
  auto layout = checkpoint::SnapshotLayout::plan(node_of, k, static_cast<int>(sc.m));
  if (!layout.ok()) return config_error("snapshot.m", layout.status().message());
  store->layout_ = std::move(*layout);
  if (sc.async && store->layout_.m() > 0) {
    int level = 0;
    MPI_Query_thread(&level);
    if (level < MPI_THREAD_MULTIPLE)
      return config_error("snapshot.async", "encodes from a background thread, which needs MPI initialized with "
                                            "MPI_THREAD_MULTIPLE");
    if (MPI_Comm_dup(mpi_of(scope.world), &store->async_comm_) != MPI_SUCCESS)
      return absl::InternalError("MPI_Comm_dup failed");
  }
  MEMTRAIN_ASSIGN_OR_RETURN(Runs runs, store->state_runs());
  std::vector<int64_t> sizes(store->world_);
  MEMTRAIN_RETURN_IF_ERROR(scope.world.all_gather(&runs.bytes, sizes.data(), 8, DType::kU8));
  const int64_t largest = *std::max_element(sizes.begin(), sizes.end());
  store->region_bytes_ = kHeaderBytes + (largest + 63) / 64 * 64;
  for (int slot = 0; slot < 2; ++slot) MEMTRAIN_RETURN_IF_ERROR(store->open_or_create(slot, store->region_bytes_));
  return store;
}

SnapshotStore::~SnapshotStore() {
  if (encoder_.joinable()) encoder_.join();
  if (async_comm_ != MPI_COMM_NULL) MPI_Comm_free(&async_comm_);
}

absl::Status SnapshotStore::wait() {
  if (!encoder_.joinable()) return absl::OkStatus();
  encoder_.join();
  return std::exchange(encoded_, absl::OkStatus());
}

std::string SnapshotStore::data_name(const std::string& job, int rank, int slot) {
  return absl::StrCat("memtrain.", job, ".d", rank, ".", slot);
}

std::string SnapshotStore::parity_name(const std::string& job, int group, int j, int slot) {
  return absl::StrCat("memtrain.", job, ".p", group, ".", j, ".", slot);
}

absl::Status SnapshotStore::connect_objects(const std::vector<int>& node_of) {
  const SnapshotConfig& sc = scope_.cfg.snapshot;
  if (!sc.keeper) {
    objects_ = std::make_unique<checkpoint::DevShmObjects>();
    return absl::OkStatus();
  }
  // The node's first rank starts its keeper when none answers; the others connect once every node has one.
  const std::string socket = keeper_socket(job_, snapshot_node(sc, rank_));
  const bool first = std::find(node_of.begin(), node_of.end(), node_of[rank_]) - node_of.begin() == rank_;
  absl::StatusOr<std::unique_ptr<checkpoint::KeeperClient>> keeper = absl::UnavailableError("not yet");
  if (first) keeper = connect_keeper(socket, sc, /*start=*/true);
  MEMTRAIN_RETURN_IF_ERROR(agree(scope_.world, first ? keeper.status() : absl::OkStatus()));
  if (!first) keeper = connect_keeper(socket, sc, /*start=*/false);
  MEMTRAIN_RETURN_IF_ERROR(agree(scope_.world, keeper.status()));
  objects_ = std::move(*keeper);
  return absl::OkStatus();
}

absl::Status SnapshotStore::open_or_create(int slot, int64_t region_bytes) {
  auto get = [&](const std::string& name) { return objects_->get(name, kCommitBytes + region_bytes); };
  if (static_cast<int>(data_.size()) <= slot) data_.resize(slot + 1);
  MEMTRAIN_ASSIGN_OR_RETURN(data_[slot], get(data_name(job_, rank_, slot)));
  if (static_cast<int>(parity_.size()) <= slot) parity_.resize(slot + 1);
  parity_[slot].clear();
  for (const auto& [g, j] : layout_.parity_held_by(rank_)) {
    MEMTRAIN_ASSIGN_OR_RETURN(checkpoint::ShmSegment p, get(parity_name(job_, g, j, slot)));
    parity_[slot].push_back(std::move(p));
  }
  return absl::OkStatus();
}

absl::StatusOr<SnapshotStore::Runs> SnapshotStore::state_runs() {
  const CheckpointScope& s = scope_;
  MEMTRAIN_RETURN_IF_ERROR(s.engine.bring_values_in());  // an offloaded shard (offload.parameters)
  Runs out;
  for (const parallel::LocalSegment& seg : s.engine.stored_values())
    out.runs.emplace_back(reinterpret_cast<char*>(seg.value), seg.seg.n * 4);
  MEMTRAIN_ASSIGN_OR_RETURN(out.states, s.opt.checkpoint_state());
  for (const optim::CheckpointArray& a : out.states.arrays) {
    int64_t n = a.target.n;
    if (a.whole) {
      for (const optim::CheckpointArraySpec& spec : optim::checkpoint_layout(*a.target.param, s.cfg.optim))
        if (spec.name == a.name) n = shape_numel(spec.shape);
    }
    out.runs.emplace_back(static_cast<char*>(a.data), n * static_cast<int64_t>(dtype_size(a.dtype)));
  }
  for (const auto& r : out.runs) out.bytes += r.second;
  return out;
}

absl::Status SnapshotStore::take(int64_t step) {
  const absl::Status previous = wait();
  MEMTRAIN_RETURN_IF_ERROR(agree(scope_.world, previous));
  const int slot = static_cast<int>((step / scope_.cfg.snapshot.interval) % 2);
  MEMTRAIN_ASSIGN_OR_RETURN(Runs runs, state_runs());
  checkpoint::ShmSegment& d = data_[slot];
  write_commit(d, -1, 0);  // this slot no longer counts until every rank finished it
  for (auto& p : parity_[slot]) write_commit(p, -1, 0);
  char* region = d.data() + kCommitBytes;
  const Header h{kMagic, step, scope_.opt.steps_taken(), runs.bytes};
  std::memset(region, 0, kHeaderBytes);
  std::memcpy(region, &h, sizeof h);
  char* at = region + kHeaderBytes;
  for (const auto& [p, n] : runs.runs) {
    std::memcpy(at, p, static_cast<size_t>(n));
    at += n;
  }
  std::memset(at, 0, static_cast<size_t>(region + region_bytes_ - at));
  // The state is copied: training may go on while the parity is computed.
  if (async_comm_ != MPI_COMM_NULL) {
    encoder_ = std::thread([this, slot, step] {
      const MPI_Comm comm = async_comm_;
      encoded_ = encode_and_commit(comm, slot, step, [comm](absl::Status st) {
        return agree_in_background(comm, st, "encode its snapshot");
      });
    });
    return absl::OkStatus();
  }
  return encode_and_commit(mpi_of(scope_.world), slot, step,
                           [this](absl::Status st) { return agree(scope_.world, st); });
}

absl::Status SnapshotStore::encode_and_commit(MPI_Comm comm, int slot, int64_t step,
                                              const std::function<absl::Status(absl::Status)>& agree_all) {
  char* region = data_[slot].data() + kCommitBytes;
  absl::Status st;
  if (layout_.m() > 0) {
    std::vector<uint8_t*> parity;
    for (auto& p : parity_[slot]) parity.push_back(reinterpret_cast<uint8_t*>(p.data() + kCommitBytes));
    auto sent = checkpoint::encode_parity(comm, layout_, reinterpret_cast<uint8_t*>(region), region_bytes_,
                                          parity.data(), scratch_);
    st = sent.status();
    if (sent.ok()) bytes_sent_ += *sent;
  }
  MEMTRAIN_RETURN_IF_ERROR(agree_all(st));  // a snapshot counts once every rank wrote its part
  write_commit(data_[slot], step, xxhash64(region, static_cast<size_t>(region_bytes_)));
  for (auto& p : parity_[slot])
    write_commit(p, step, xxhash64(p.data() + kCommitBytes, static_cast<size_t>(region_bytes_)));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> SnapshotStore::recover(int64_t than_step) {
  const auto start = std::chrono::steady_clock::now();
  const bool lead = rank_ == 0 && !scope_.quiet;
  // Every rank's intact steps: [data slot 0, data slot 1, then per held parity its two slots].
  const int held = static_cast<int>(layout_.parity_held_by(rank_).size());
  const int width = 2 + 2 * layout_.m() * static_cast<int>(layout_.groups().size());  // room for any rank's holdings
  std::vector<int64_t> mine(width, -1), all(static_cast<size_t>(width) * world_);
  for (int slot = 0; slot < 2; ++slot) {
    mine[slot] = intact_step(data_[slot]);
    for (int h = 0; h < held; ++h) mine[2 + 2 * h + slot] = intact_step(parity_[slot][h]);
  }
  MEMTRAIN_RETURN_IF_ERROR(scope_.world.all_gather(mine.data(), all.data(), 8 * width, DType::kU8));
  auto data_step = [&](int r, int slot) { return all[static_cast<size_t>(r) * width + slot]; };
  auto parity_step = [&](int r, int h, int slot) { return all[static_cast<size_t>(r) * width + 2 + 2 * h + slot]; };
  // The newest step every group can rebuild: a rank counts as lost when any shard it should hold for that step
  // (its data, or a parity it holds) is not intact.
  std::vector<int64_t> steps;
  for (int64_t v : all) {
    if (v > than_step) steps.push_back(v);
  }
  std::sort(steps.rbegin(), steps.rend());
  steps.erase(std::unique(steps.begin(), steps.end()), steps.end());
  for (int64_t step : steps) {
    std::vector<bool> lost(world_, false);
    std::vector<int> slot_of(world_, -1);
    for (int r = 0; r < world_; ++r) {
      for (int slot = 0; slot < 2; ++slot) {
        if (data_step(r, slot) == step) slot_of[r] = slot;
      }
      lost[r] = slot_of[r] < 0;
      const int n = static_cast<int>(layout_.parity_held_by(r).size());
      for (int h = 0; h < n; ++h) {
        bool found = false;
        for (int slot = 0; slot < 2; ++slot) found = found || parity_step(r, h, slot) == step;
        lost[r] = lost[r] || !found;
      }
    }
    if (!layout_.tolerates(lost)) continue;
    // This rank's region of `step`: the slot holding it, or (lost) the slot the step uses, rebuilt there.
    const int slot = lost[rank_] ? static_cast<int>((step / scope_.cfg.snapshot.interval) % 2) : slot_of[rank_];
    int lost_count = 0;
    for (bool l : lost) lost_count += l;
    if (lost_count > 0) {
      uint8_t* region = reinterpret_cast<uint8_t*>(data_[slot].data() + kCommitBytes);
      std::vector<std::vector<uint8_t>> parity(held);
      std::vector<int> parity_slot(held, slot);  // where each held parity of `step` is (or goes)
      for (int h = 0; h < held; ++h) {
        for (int s2 = 0; s2 < 2; ++s2) {
          if (parity_step(rank_, h, s2) == step) parity_slot[h] = s2;
        }
        const char* p = parity_[parity_slot[h]][h].data() + kCommitBytes;
        parity[h].assign(p, p + region_bytes_);
      }
      MEMTRAIN_ASSIGN_OR_RETURN(const int64_t sent, checkpoint::rebuild_lost(mpi_of(scope_.world), layout_, lost,
                                                                             region, region_bytes_, parity));
      bytes_sent_ += sent;
      if (lost[rank_]) write_commit(data_[slot], step, xxhash64(region, static_cast<size_t>(region_bytes_)));
      for (int h = 0; h < held; ++h) {
        checkpoint::ShmSegment& p = parity_[parity_slot[h]][h];
        std::memcpy(p.data() + kCommitBytes, parity[h].data(), static_cast<size_t>(region_bytes_));
        write_commit(p, step, xxhash64(parity[h].data(), static_cast<size_t>(region_bytes_)));
      }
    }
    // Restore this rank's state from the region.
    const char* region = data_[slot].data() + kCommitBytes;
    Header h{};
    std::memcpy(&h, region, sizeof h);
    MEMTRAIN_ASSIGN_OR_RETURN(Runs runs, state_runs());
    absl::Status fits = h.magic == kMagic && h.step == step && h.state_bytes == runs.bytes
                            ? absl::OkStatus()
                            : absl::DataLossError("snapshot header does not match this run's state");
    MEMTRAIN_RETURN_IF_ERROR(agree(scope_.world, fits));
    const char* at = region + kHeaderBytes;
    for (const auto& [p, n] : runs.runs) {
      std::memcpy(p, at, static_cast<size_t>(n));
      at += n;
    }
    MEMTRAIN_RETURN_IF_ERROR(scope_.opt.restore(runs.states, h.optimizer_steps));
    if (lead) {
      std::printf("memtrain: resumed from the in-memory snapshot of step %lld (%d rank%s rebuilt from parity) in "
                  "%.3f s\n",
                  static_cast<long long>(step), lost_count, lost_count == 1 ? "" : "s",
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    return step;
  }
  if (lead && !steps.empty()) {
    std::printf("memtrain: no in-memory snapshot newer than step %lld can be rebuilt (too many ranks lost theirs); "
                "continuing from %s\n",
                static_cast<long long>(than_step), than_step > 0 ? "the checkpoint" : "the start");
  }
  return than_step;
}

absl::Status SnapshotStore::finish() {
  MEMTRAIN_RETURN_IF_ERROR(agree(scope_.world, wait()));
  if (!scope_.cfg.snapshot.keep_at_exit) remove_objects(*objects_, job_, layout_, rank_);
  return absl::OkStatus();
}

void SnapshotStore::remove_objects(checkpoint::ObjectSource& objects, const std::string& job,
                                   const checkpoint::SnapshotLayout& layout, int rank) {
  for (int slot = 0; slot < 2; ++slot) {
    objects.drop(data_name(job, rank, slot));
    for (const auto& [g, j] : layout.parity_held_by(rank)) objects.drop(parity_name(job, g, j, slot));
  }
}

}  // namespace memtrain::trainer
