// Sharded training for optimizers that need whole matrices (GaLore, APOLLO, Adafactor: works_on_whole_matrices).
// Under ZeRO-1/2 a rank's slices cut matrices, and under tensor parallelism a rank holds a part of each: so every
// tensor the optimizer needs whole (needs_whole_tensor) gets one owner among the ranks that hold pieces of it (the
// "matrix group": the tp x dp ranks of a pipeline stage, or the tp ranks at ZeRO-0), the largest first, each to
// the member with the fewest elements to update so far. Before the update the holders of the gradient's pieces
// (one holder per element: tp parts that replicate another's are not sent) send them to the owner, and with tensor
// parallelism also the values of the other tp parts; the owner assembles the global matrix, updates it as one
// process would and sends every holder its piece of the new values (a ZeRO step's all-gather then spreads them as
// usual). Other tensors are updated piecewise, as AdamW is. A rank keeps optimizer state only for what it updates;
// the owner keeps copies of its matrices' gradients (category gradients), with tp also of their values
// (parameters) and a receive area for pieces that land in strided places (communication). Pieces travel point to
// point, so a dp run adds the numbers one process adds and its curve is the same.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "optim/optimizer.h"
#include "parallel/communicator.h"
#include "parallel/data_parallel.h"
#include "parallel/shard_layout.h"

namespace memtrain::optim {

// The ranks that share matrices and what each holds. Member g = q * tp + t: the engine rank q of tp rank t.
struct MatrixGroup {
  int tp = 1;
  std::vector<std::vector<const model::Param*>> params;  // [t][entry]: tp rank t's parameters (shapes and splits)
  std::vector<parallel::ShardLayout> layouts;            // [t]: the layout of tp rank t's engine
  bool sharded = true;  // ZeRO-1/2: member (t, q) holds its slices; false (ZeRO-0): whole local tensors, q = 0

  int members() const { return tp * (sharded ? layouts[0].ranks() : 1); }
  int tp_of(int member) const { return member % tp; }
  std::vector<parallel::ShardSegment> pieces(int member) const;
};

// Entry -> owner member, or -1 for tensors updated piecewise. load[g]: elements member g updates piecewise;
// whole_numel[e]: the global elements of entry e when it is needed whole, else 0.
std::vector<int> assign_matrix_owners(std::vector<int64_t> load, const std::vector<int64_t>& whole_numel);
std::vector<int> assign_matrix_owners(const MatrixGroup& group, const OptimConfig& cfg);

// Bytes each member holds for the optimizer: its state, the owner's gradient and value copies, the receive area.
struct MemberOptimizerBytes {
  int64_t state = 0, gradient_copy = 0, value_copy = 0, staging = 0;
};
std::vector<MemberOptimizerBytes> matrix_owner_bytes(const MatrixGroup& group, const OptimConfig& cfg);

class MatrixOwners final : public Optimizer {
 public:
  // comm: the matrix group, comm.rank() == this rank's member index. owned / stored: this rank's engine's.
  static absl::StatusOr<std::unique_ptr<Optimizer>> create(parallel::Communicator& comm, const MatrixGroup& group,
                                                           const std::vector<parallel::LocalSegment>& owned,
                                                           const std::vector<parallel::LocalSegment>& stored,
                                                           const OptimConfig& cfg, uint64_t seed);
  absl::Status step(double lr) override;
  int64_t steps_taken() const override { return inner_->steps_taken(); }
  // The inner optimizer's arrays; those of the matrices this rank owns are whole arrays.
  absl::StatusOr<CheckpointStates> checkpoint_state() override;
  absl::Status restore(const CheckpointStates& states, int64_t steps_taken) override {
    return inner_->restore(states, steps_taken);
  }

 private:
  // A run of a piece in the global tensor: `n` elements from piece-relative `local` at global offset `global`.
  struct Run {
    int64_t local, global, n;
  };
  // One message of a piece. On a holder `data` is the engine's piece. On the owner `data` is where the piece
  // arrives or leaves from: straight in the global copy when it is one run, else in the receive area, scattered
  // to (or gathered from) `global` + the runs.
  struct Transfer {
    int peer, tag;
    float* data;
    int64_t n;
    float* global = nullptr;
    std::vector<Run> runs;
  };
  struct Phase {  // messages that may be in flight together
    std::vector<Transfer> recvs, sends;
    std::vector<Transfer> local;  // the owner's own piece: data is the engine's, copied through the runs
  };
  explicit MatrixOwners(parallel::Communicator& comm) : comm_(comm) {}
  absl::Status run_phase(Phase& phase, bool to_global);

  parallel::Communicator& comm_;
  std::vector<std::unique_ptr<model::Param>> global_params_;  // owned matrices with their global shape
  Tensor gradient_copy_, value_copy_, staging_;
  Phase grads_, values_in_, values_out_;
  std::unique_ptr<Optimizer> inner_;
};

}  // namespace memtrain::optim
