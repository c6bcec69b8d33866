// In-memory snapshots (snapshot.interval): every rank's state (its stored parameter values, its optimizer state,
// the step counts) copied into a POSIX shared-memory object every `interval` steps, protected by Reed-Solomon parity
// that other ranks hold (checkpoint/snapshot_layout.h, snapshot_parity.h). The objects outlive the trainer, so a
// restart of the same job (train.resume = "auto") continues from the newest snapshot that is complete across the
// job, rebuilding the shards of up to snapshot.m lost ranks per group, when it is newer than the last checkpoint.
//
// The objects are held by the node's keeper (snapshot.keeper, trainer/snapshot_keeper.h) or named in /dev/shm.
// Per rank and slot (two slots, used in turn, so a snapshot being written never replaces the only complete one):
//   memtrain.JOB.dRANK.SLOT     a commit block, then the encoded region: a header and the state
//   memtrain.JOB.pG.J.SLOT      on the holder of group G's parity J: a commit block, then the parity
// A slot counts once its commit block says so, which happens after every rank wrote its region and parity.
#pragma once

#include <mpi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "checkpoint/shm_segment.h"
#include "checkpoint/snapshot_layout.h"
#include "trainer/checkpointing.h"

namespace memtrain::trainer {

class SnapshotStore {
 public:
  // Collective (the ranks' nodes are exchanged). Null when snapshot.interval is 0.
  static absl::StatusOr<std::unique_ptr<SnapshotStore>> create(const CheckpointScope& scope);
  ~SnapshotStore();

  // Collective: the state after `step` steps. The copy into shared memory happens here (the stall); the parity,
  // with snapshot.async, in a background thread over a duplicate of the world's communicator, while training goes
  // on: the snapshot counts once that finished on every rank. Returns the previous background encoding's outcome
  // (waited for first: one at a time, so the other slot always holds the last complete snapshot).
  absl::Status take(int64_t step);
  // Waits for the background encoding in flight and returns its outcome (OK when there is none).
  absl::Status wait();
  // Collective, at start: restores the newest complete snapshot newer than `than_step` (the checkpoint resumed
  // from, 0 for none) and returns its step, or returns `than_step` (printing why when snapshots existed).
  absl::StatusOr<int64_t> recover(int64_t than_step);
  // At the end of a successful run: waits for the encoding in flight, then removes this rank's objects unless
  // snapshot.keep_at_exit.
  absl::Status finish();
  // Removes what rank `rank` holds for job `job` under `layout` from `objects`: both slots of its data and of the
  // parity it holds (what a lost node's memory takes with it).
  static void remove_objects(checkpoint::ObjectSource& objects, const std::string& job,
                             const checkpoint::SnapshotLayout& layout, int rank);
  static std::string data_name(const std::string& job, int rank, int slot);

  const std::string& job() const { return job_; }
  const checkpoint::SnapshotLayout& layout() const { return layout_; }
  int64_t region_bytes() const { return region_bytes_; }  // what each rank's snapshot encodes
  int64_t bytes_sent() const { return bytes_sent_; }  // parity and rebuild traffic so far (encodings finished)
  checkpoint::ObjectSource& objects() { return *objects_; }

 private:
  explicit SnapshotStore(const CheckpointScope& scope) : scope_(scope) {}
  struct Runs;  // where this rank's state lives, in snapshot order
  absl::StatusOr<Runs> state_runs();
  static std::string parity_name(const std::string& job, int group, int j, int slot);
  absl::Status connect_objects(const std::vector<int>& node_of);
  absl::Status open_or_create(int slot, int64_t region_bytes);
  // Encodes the parity of `slot` (holding `step`) over `comm`; once every rank succeeded (`agree_all`: the
  // outcome on every rank), commits it.
  absl::Status encode_and_commit(MPI_Comm comm, int slot, int64_t step,
                                 const std::function<absl::Status(absl::Status)>& agree_all);

  CheckpointScope scope_;
  std::string job_;
  std::unique_ptr<checkpoint::ObjectSource> objects_;  // the keeper's or /dev/shm's
  int rank_ = 0, world_ = 1;
  checkpoint::SnapshotLayout layout_;
  int64_t region_bytes_ = 0;  // the same on every rank: the largest state, plus the header
  std::vector<checkpoint::ShmSegment> data_;                 // per slot
  std::vector<std::vector<checkpoint::ShmSegment>> parity_;  // per slot, per layout.parity_held_by(rank)
  std::vector<uint8_t> scratch_;  // encode_parity's working memory, kept: fresh pages are slow to touch
  std::atomic<int64_t> bytes_sent_ = 0;  // added to by the encoder
  MPI_Comm async_comm_ = MPI_COMM_NULL;  // snapshot.async: the encoder's duplicate of the world
  std::thread encoder_;
  absl::Status encoded_;  // the outcome of the encoding in flight, set by the encoder before it ends
};

}  // namespace memtrain::trainer
