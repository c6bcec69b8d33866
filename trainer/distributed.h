// How a training run sits on the device mesh: the mesh from [parallel], the checks of the mesh against the model
// (before anything is allocated), the data-parallel engine over the model's parameter units, and agreement between
// ranks about a failure only some of them saw.
#pragma once

#include <mpi.h>

#include <memory>

#include "absl/status/statusor.h"
#include "optim/matrix_owners.h"
#include "optim/optimizer.h"
#include "parallel/communicator.h"
#include "parallel/data_parallel.h"
#include "parallel/device_mesh.h"
#include "trainer/config.h"
#include "trainer/session.h"

namespace memtrain::trainer {

// Every mesh dimension must divide what it splits: tp the attention heads (and the key/value heads, or be a
// multiple of them), the MLP width and not exceed the vocabulary, pp the layers, cp the sequence into 2 * cp
// chunks (with cp_a2a: 2 * cp_ring chunks of cp_a2a pieces, and cp_a2a this rank's heads; with SP, tp the tokens
// of a piece); hpZ groups the data-parallel ranks; pipelines run with ZeRO 0-1.
absl::Status check_mesh_fits_model(const Config& cfg, const parallel::MeshShape& shape);

struct MeshRun {
  parallel::DeviceMesh mesh;
  // The ranks that hold the same parameters and sum their gradients: dp x cp (Megatron's data-parallel group with
  // context parallelism, since cp ranks share every parameter). Null when cp is 1: then it is the dp axis.
  std::unique_ptr<parallel::Communicator> dp_cp;
  std::unique_ptr<parallel::Communicator> hpz;  // this rank's hpZ group of data-parallel ranks, or null
  bool sequence_parallel = false;  // parallel.sequence_parallel
  // Optimizers that need whole matrices, with tp > 1 and ZeRO-1/2: the tp x dp x cp ranks of this pipeline stage,
  // rank q * tp + t for engine rank q of tp rank t (optim::MatrixGroup's members). Null otherwise.
  std::unique_ptr<parallel::Communicator> matrix_group;
  // Unified SP (parallel.cp_a2a > 1): the cp group's all-to-all part (cp_a2a consecutive cp ranks) and its ring
  // (the ranks with the same a2a rank). Null otherwise: the ring is the cp axis.
  std::unique_ptr<parallel::Communicator> cp_a2a, cp_ring;
  parallel::Communicator& dp() { return mesh.comm(parallel::Axis::kDp); }  // ranks that read different data
  parallel::Communicator& data_parallel() { return dp_cp ? *dp_cp : dp(); }  // the engine's group
  model::TensorParallel tp() {
    return model::TensorParallel::over(mesh.comm(parallel::Axis::kTp), sequence_parallel);
  }
  model::ContextParallel cp() {
    parallel::Communicator& whole = mesh.comm(parallel::Axis::kCp);
    return cp_a2a ? model::ContextParallel::over(*cp_ring, *cp_a2a, whole) : model::ContextParallel::over(whole);
  }
  parallel::Communicator& pp() { return mesh.comm(parallel::Axis::kPp); }
};
// Collective over `world`: the mesh and, with hpZ, the group communicator. Config errors come before any split.
absl::StatusOr<MeshRun> create_mesh_run(parallel::Communicator& world, const Config& cfg);

// What this rank's communicators (the world's and every one of `run`) did so far: bytes sent (the ring model's
// count, parallel/communicator.h) and seconds blocked waiting on them.
struct CommTotals {
  int64_t bytes = 0;
  double wait_s = 0;
};
CommTotals comm_totals(parallel::Communicator& world, MeshRun& run);

// The engine over `bundle`'s parameters (registered, not allocated), their initial values written from
// train.seed (each rank only what it stores), and the model's hooks pointed at it.
absl::StatusOr<std::unique_ptr<parallel::DataParallel>> create_data_parallel(const Config& cfg, MeshRun& run,
                                                                            ModelBundle& bundle);

// The optimizer optim.name names over the pieces of parameters this rank updates (engine.owned()): optimizer
// state for those only. Optimizers that need whole matrices get them through optim::MatrixOwners when a rank holds
// pieces (ZeRO-1/2 over several ranks, or tensor parallelism). Under PeriodicLoRA (lora.periodic_interval) it is an
// optim::Restartable, which the caller restarts at each stage's end.
absl::StatusOr<std::unique_ptr<optim::Optimizer>> create_sharded_optimizer(const Config& cfg, MeshRun& run,
                                                                          const ModelBundle& bundle,
                                                                          const parallel::DataParallel& engine);

// Whether this run's optimizer goes through optim::MatrixOwners: it needs whole matrices and a rank holds pieces.
bool uses_matrix_owners(const Config& cfg, const parallel::MeshShape& mesh);
// The matrix group of pipeline rank pp_rank from shapes alone: every tp rank's parameters, kept in `parts`, and
// its engine layout over dp x cp ranks.
absl::StatusOr<optim::MatrixGroup> matrix_group_shapes(const Config& cfg, const parallel::MeshShape& mesh,
                                                       int pp_rank, std::vector<model::ParamSet>& parts);

// The 2-norm of the whole model's reduced gradient (valid after engine.finish_gradients()), the same on every
// rank: each piece counted once, on its primary tp rank, summed over tp and pp. Without tp and pp, the engine's
// own (bitwise) norm.
absl::StatusOr<double> mesh_grad_norm(MeshRun& run, const ModelBundle& bundle, parallel::DataParallel& engine);

// Collective over tp: one tensor whole (global shape, into `whole`) from every tp rank's part, `part` this rank's;
// rank_parts[r] is the tensor as tp rank r holds it (its split, from that rank's shapes-only model).
absl::Status gather_tp_parts(parallel::Communicator& tp, const float* part,
                             const std::vector<const model::Param*>& rank_parts, float* whole);
// `global` (p's whole tensor) into what this rank stores of p, a parameter of `trainable`: its engine segments (a
// ZeRO-3 shard holds slices), or for a frozen tensor (LoRA-FA's A) its local value. For initialisations that
// compute whole adapters (LoRA-GA, QuAILoRA).
void store_global_value(const model::Param& p, const float* global, const parallel::DataParallel& engine,
                        const model::ParamSet& trainable);
// Collective over tp (after engine.materialize_values()): a single-process model whose parameters hold the global
// values and gradients assembled from every tp rank's parts, for saving and sampling. Every rank of the tp group
// gets one; under PeriodicLoRA or LoRA-GA with the frozen base as training left it. (Gradients are only meaningful
// where the engine keeps them whole: stages 0 and 1.)
absl::StatusOr<std::unique_ptr<ModelBundle>> gather_tensor_parallel(const Config& cfg, MeshRun& run,
                                                                    const ModelBundle& local);
// Collective over pp (ranks with the same tp, cp and dp coordinates), after gather_tensor_parallel where tp > 1:
// pp rank 0 gets a whole model assembled from every stage's (whole-stage) model `stage_model`; others get null.
absl::StatusOr<std::unique_ptr<ModelBundle>> gather_pipeline(const Config& cfg, MeshRun& run,
                                                             const ModelBundle& stage_model);

// Collective: OK when every rank passes OK; otherwise this rank's own error, or, on a rank that succeeded, an
// error with the first failed rank's code saying which rank failed (its message is printed by that rank).
absl::Status agree(parallel::Communicator& world, absl::Status local);
// The same from a background thread, over its own duplicate `comm` of the world (MPI_COMM_NULL: one process); a
// rank that succeeded while another failed gets "another rank failed to <what>".
absl::Status agree_in_background(MPI_Comm comm, absl::Status local, const char* what);

}  // namespace memtrain::trainer
