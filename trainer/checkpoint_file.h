// What one checkpoint file holds and how it reaches the disk; trainer/checkpointing drives it for a run. Datasets
// are global tensors with each rank's pieces; a write checks the disk's room, goes to step_<N>.h5.tmp, and is then
// committed (fsync, rename, `latest`, only the newest kept) or removed; a reader checks the manifest and that the
// file fits the model. Also the one-process access of memtrain convert.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "checkpoint/hdf5_file.h"
#include "checkpoint/safetensors.h"
#include "trainer/config.h"

namespace memtrain::trainer {

inline constexpr int kCheckpointFormat = 1;
// The manifest's "optimizer" of a checkpoint that holds weights only.
inline constexpr char kNoOptimizer[] = "none";

std::string checkpoint_dir(const Config& cfg);  // output.dir/checkpoints
std::string checkpoint_file_name(int64_t step);  // step_<N>.h5
// The steps of the checkpoints in dir (complete files only, no .tmp), newest first.
std::vector<int64_t> checkpoint_steps(const std::string& dir);

// One array of this rank for one dataset: its runs and where its elements live (packed in run order).
struct Piece {
  std::vector<checkpoint::GlobalRun> runs;
  void* data = nullptr;
};

// A dataset of the checkpoint with this rank's pieces: those it writes (each element by exactly one rank) and
// those it reads back (everything it holds). Every rank lists the same datasets in the same order.
struct Dataset {
  std::string name;
  Shape shape;
  DType dtype = DType::kF32;
  Piece write, read;
};

// Makes a status the same on every rank (the first error wins); identity for one process.
using AgreeFn = std::function<absl::Status(absl::Status)>;

// Writes the checkpoint of `step` into dir (collective over comm; MPI_COMM_NULL for one process): the lead creates
// dir, removes stale .tmp files and checks the disk's room; every rank writes its pieces; the lead commits the
// file and keeps the newest `keep`. On failure the previous checkpoints stay as they were.
absl::Status write_checkpoint(const std::string& dir, int64_t step, int64_t keep, const std::vector<Dataset>& all,
                              const std::string& manifest, MPI_Comm comm, bool lead, const AgreeFn& agree);

// The manifest attribute, parsed; DataLoss when it is not a JSON object with the fields every save writes.
absl::StatusOr<nlohmann::json> read_manifest(const checkpoint::Hdf5File& file);
// Whether the file holds every dataset a resume reads (only params/ without the optimizer), with the shapes and
// types the model needs, and no parameter the model lacks: InvalidArgument listing every difference when not.
absl::Status check_fit(const checkpoint::Hdf5File& file, const std::vector<Dataset>& all, bool with_optimizer);

// One process's view of a checkpoint file, for memtrain convert: the config it was saved with and every parameter
// whole, in the model's registration order.
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
// of cfg.model into cfg.output.dir/checkpoints, as a save does. `extra_json` is merged into the manifest.
absl::Status write_weights_checkpoint(const Config& cfg, const std::vector<checkpoint::NamedTensor>& params,
                                      const std::string& extra_json);

}  // namespace memtrain::trainer
