// Checkpoints of a training run (issue 8, first part): one HDF5 file per save in output.dir/checkpoints, written by
// every rank together (checkpoint/hdf5_file): each parameter as its global tensor under its Hugging Face name
// ("params/<name>"), each optimizer state array beside it ("optim/<name>/<array>"), and a JSON manifest attribute
// (step, optimizer, steps it took, the config). A rank writes only what it alone holds (its ZeRO pieces, its
// primary tensor-parallel parts, the first pipeline stage's copy of a tied tensor), so each element is written
// once. A save goes to step_<N>.h5.tmp, is fsynced and renamed, then `latest` names it and only the newest
// train.keep_checkpoints stay. Resuming reads each rank's own pieces of the global tensors, whatever mesh wrote
// them; a checkpoint that fails its checksums is skipped for the one before it, with a warning.
#pragma once

#include <cstdint>

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
  const parallel::DataParallel& engine;
  optim::Optimizer& opt;
  bool quiet = false;  // no "resumed from" line
};

// OK when checkpoints can store this run's optimizer state; else a config error naming optim.name.
absl::Status check_checkpointable(optim::Optimizer& opt, const Config& cfg);

// Collective: writes the checkpoint of the state after `step` steps.
absl::Status save_checkpoint(const CheckpointScope& scope, int64_t step);

// Collective: with train.resume = "auto", loads the newest intact checkpoint of output.dir and returns its step;
// 0 when there is none (a fresh start).
absl::StatusOr<int64_t> resume_from_checkpoint(const CheckpointScope& scope);

}  // namespace memtrain::trainer
