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

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "checkpoint/safetensors.h"
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

// Collective: writes the checkpoint of the state after `step` steps.
absl::Status save_checkpoint(const CheckpointScope& scope, int64_t step);

// Collective: with train.resume = "auto", loads the newest intact checkpoint of output.dir and returns its step;
// 0 when there is none (a fresh start).
absl::StatusOr<int64_t> resume_from_checkpoint(const CheckpointScope& scope);

// One process's view of a checkpoint file, for memtrain convert and --weights: the config it was saved with and
// every parameter whole, in the model's registration order.
struct CheckpointWeights {
  std::string path;
  Config config;
  std::string manifest_json;
  std::vector<checkpoint::NamedTensor> params;
};
// `path`: a checkpoint file, a checkpoints directory (its `latest`) or a run's output.dir. Checks checksums, and
// that the file holds exactly the parameters its config's model has.
absl::StatusOr<CheckpointWeights> read_checkpoint_weights(const std::string& path);

// One process writes a weights-only checkpoint (step 0, no optimizer state; a resume starts the optimizer afresh)
// of cfg.model into cfg.output.dir/checkpoints, as a save does. `extra` is merged into the manifest.
absl::Status write_weights_checkpoint(const Config& cfg, const std::vector<checkpoint::NamedTensor>& params,
                                      const std::string& extra_json);

}  // namespace memtrain::trainer
