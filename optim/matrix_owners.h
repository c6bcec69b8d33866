// ZeRO-1/2 for optimizers that need whole matrices (GaLore, APOLLO, Adafactor: optim::works_on_whole_matrices).
// A rank's slices of a unit cut its matrices, so every tensor the optimizer needs whole (needs_whole_tensor) gets one
// owner among the dp ranks: the largest first, each to the rank with the fewest elements to update so far. Before
// the update every rank holding a reduced piece of a matrix sends it to the owner, which assembles the whole
// gradient, updates the whole matrix (values are full on every rank below stage 3) and sends each holder its piece
// of the new values; the all-gather that ends the step then spreads them as usual. Other tensors are updated
// piecewise, as AdamW is. A rank keeps optimizer state only for what it updates; the owner's copy of its matrices'
// gradients is the one extra buffer (category gradients). Pieces travel point to point, straight between that copy
// and the engine's buffers, so a dp run adds the numbers a single process adds and its curve is the same.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "optim/optimizer.h"
#include "parallel/communicator.h"
#include "parallel/data_parallel.h"
#include "parallel/shard_layout.h"

namespace memtrain::optim {

// Entry -> owner rank, or -1 for tensors updated piecewise; whole[e]: entry e is needed whole.
std::vector<int> assign_matrix_owners(const parallel::ShardLayout& layout, const std::vector<bool>& whole);

// What rank `rank` updates: its pieces of the tensors updated piecewise and the whole tensors it owns.
struct RankUpdates {
  std::vector<parallel::ShardSegment> pieces;
  std::vector<int> whole;      // entries
  int64_t whole_elements = 0;  // the owner's gradient copy, in floats
};
RankUpdates updates_of_rank(const parallel::ShardLayout& layout, const std::vector<int>& owners, int rank);

// The optimizer state and the gradient copy of each rank under ZeRO-1/2 for `params` (by entry), in bytes.
struct RankOptimizerBytes {
  int64_t state = 0, gradient_copy = 0;
};
std::vector<RankOptimizerBytes> matrix_owner_bytes(const parallel::ShardLayout& layout,
                                                   const std::vector<const model::Param*>& params,
                                                   const OptimConfig& cfg);

class MatrixOwners final : public Optimizer {
 public:
  // params[e]: the parameter of layout entry e. owned / stored: the engine's (stage 1 or 2).
  static absl::StatusOr<std::unique_ptr<Optimizer>> create(parallel::Communicator& dp,
                                                           const parallel::ShardLayout& layout,
                                                           const std::vector<const model::Param*>& params,
                                                           const std::vector<parallel::LocalSegment>& owned,
                                                           const std::vector<parallel::LocalSegment>& stored,
                                                           const OptimConfig& cfg, uint64_t seed);
  absl::Status step(double lr) override;
  int64_t steps_taken() const override { return inner_->steps_taken(); }

 private:
  // One piece of a whole matrix that lives on another rank: its reduced gradient goes to the owner, its new value
  // comes back. On the holder `grad`/`value` are the engine's piece; on the owner, the piece's place in the
  // gradient copy and in the full value.
  struct Transfer {
    int peer;
    int tag;  // the entry: a rank holds at most one piece of each tensor
    bool owner;
    float* grad;
    float* value;
    int64_t n;
  };
  struct LocalCopy {  // a piece the owner holds itself
    const float* from;
    float* to;
    int64_t n;
  };
  MatrixOwners(parallel::Communicator& dp) : dp_(dp) {}

  parallel::Communicator& dp_;
  Tensor gradient_copy_;
  std::vector<Transfer> transfers_;
  std::vector<LocalCopy> local_;
  std::unique_ptr<Optimizer> inner_;
};

}  // namespace memtrain::optim
