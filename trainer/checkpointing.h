// Checkpoints of a training run: one HDF5 file per save in output.dir/checkpoints, written by every rank together
// (checkpoint/hdf5_file): each parameter as its global tensor under its Hugging Face name ("params/<name>"), the
// optimizer's state arrays beside it ("optim/<name>/<array>", as optim::checkpoint_layout lists them: moments
// aligned with the parameter's elements, or whole factored / low-rank arrays that the rank updating the matrix
// holds), and a JSON manifest attribute (step, optimizer, steps it took, the config). A rank writes only what it
// alone holds (its ZeRO pieces, its primary tensor-parallel parts, the first pipeline stage's copy of a tied
// tensor), so each element is written once. A save checks the disk has room, goes to step_<N>.h5.tmp, is fsynced
// and renamed, then `latest` names it and only the newest train.keep_checkpoints stay. Resuming reads each rank's
// own pieces of the global tensors, whatever mesh wrote them; a checkpoint that fails its checksums is skipped for
// the one before it, with a warning; one that does not fit the model is an error listing the differences.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <thread>

#include "absl/status/statusor.h"
#include "optim/optimizer.h"
#include "parallel/communicator.h"
#include "parallel/data_parallel.h"
#include "trainer/config.h"
#include "trainer/distributed.h"
#include "trainer/session.h"

namespace memtrain::trainer {

// What a save and a resume work on: this rank's part of the run.
struct CheckpointScope {
  const Config& cfg;
  parallel::Communicator& world;
  MeshRun& run;
  const ModelBundle& bundle;
  parallel::DataParallel& engine;  // non-const: an offloaded shard is brought in to be saved or restored
  optim::Optimizer& opt;
  bool quiet = false;  // no "resumed from" line
};

// Saves a run's checkpoints, synchronously or, with train.checkpoint_async, in the background: a save copies this
// rank's pieces to host memory at the step boundary (the only stall) and a thread writes them while training goes
// on; a save that comes due while the previous one is still writing waits for it, never drops it.
class CheckpointSaver {
 public:
  // Collective. In the background under MPI the writes go over a duplicate of the world's communicator, which
  // needs MPI_THREAD_MULTIPLE (otherwise a config error naming train.checkpoint_async).
  static absl::StatusOr<std::unique_ptr<CheckpointSaver>> create(const CheckpointScope& scope);
  ~CheckpointSaver();  // waits for a save in flight
  CheckpointSaver(const CheckpointSaver&) = delete;
  CheckpointSaver& operator=(const CheckpointSaver&) = delete;

  // Collective: the checkpoint of the state after `step` steps. Returns this save's outcome when synchronous; in
  // the background, the previous save's (this one's comes from the next save() or wait()).
  absl::Status save(int64_t step);
  // Collective: waits for the save in flight and returns its outcome (OK when there is none).
  absl::Status wait();
  double last_stall_s() const { return stall_s_; }  // the time the last save() kept training waiting

 private:
  explicit CheckpointSaver(const CheckpointScope& scope) : scope_(scope) {}

  CheckpointScope scope_;
  bool async_ = false;
  MPI_Comm comm_ = MPI_COMM_NULL;  // the background writer's duplicate of the world (MPI_COMM_NULL: one process)
  std::thread writer_;
  Tensor snapshot_;       // this rank's pieces of the save in flight
  absl::Status written_;  // the outcome of the save in flight, set by the writer before it ends
  double stall_s_ = 0;
};

// Collective: with train.resume = "auto", loads the newest intact checkpoint of output.dir and returns its step;
// 0 when there is none (a fresh start).
absl::StatusOr<int64_t> resume_from_checkpoint(const CheckpointScope& scope);

}  // namespace memtrain::trainer
