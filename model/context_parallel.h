// ContextParallel: how the cp dimension splits every sequence (ring attention, the RingAttention/BurstAttention
// family). The T tokens of a sequence are cut into cp * slots chunks of c tokens. With causal load balancing
// (slots = 2, Megatron's layout) rank r holds chunks r and 2cp-1-r, one early and one late, so every rank attends
// over the same number of (query, key) pairs; otherwise (slots = 1) it holds chunk r.
//
// A rank's tokens are laid out chunk-major: slot j holds chunk chunk_of(rank, j) of each of the B sequences, as
// B sequences of c tokens. The model then sees a (slots * B, c) batch; only attention (which sends key/value
// blocks around the cp ring) and the positions (learned or RoPE) depend on where those tokens sit in the sequence.
// Size 1 (the default) is the single-process layout: one slot holding the whole sequence.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "model/activation_store.h"
#include "parallel/communicator.h"

namespace memtrain::model {

struct ContextParallel {
  int rank = 0, size = 1;
  int slots = 1;  // chunks per rank: 2 with causal load balancing
  // The cp group (rank() == rank, size() == size); null when size is 1 or only shapes are wanted.
  parallel::Communicator* comm = nullptr;

  static ContextParallel over(parallel::Communicator& cp, bool load_balanced = true) {
    return {cp.rank(), cp.size(), cp.size() > 1 && load_balanced ? 2 : 1, &cp};
  }
  static ContextParallel shapes_of_rank(int rank, int size, bool load_balanced = true) {
    return {rank, size, size > 1 && load_balanced ? 2 : 1, nullptr};
  }
  // The chunk of the sequence that rank r's slot j holds.
  int64_t chunk_of(int r, int j) const { return j == 0 ? r : 2 * size - 1 - r; }
  // How many chunks a sequence is cut into; T must be a multiple of it.
  int64_t chunks() const { return int64_t{size} * slots; }
  // The (B, T) batch of whole sequences -> this rank's (slots * B, T / chunks()) tokens, int32, chunk-major.
  absl::StatusOr<Tensor> local_tokens(const Tensor& whole) const;
  // Position in the sequence of each token of a (B, T) local batch (B = slots * sequences), int32, workspace.
  absl::StatusOr<Tensor> positions(int64_t B, int64_t T) const;
  // The positions of the tokens a layer runs on: packed rows' own (store.packed(), only without cp), else the above.
  absl::StatusOr<Tensor> positions(int64_t B, int64_t T, const ActivationStore& store) const {
    if (const PackedRows* packed = store.packed()) {
      MEMTRAIN_CHECK_MSG(size == 1, "packed rows run without context parallelism");
      return packed->positions;
    }
    return positions(B, T);
  }
  // Each query's first visible key for attention over packed rows; null for plain sequences.
  static const int32_t* first_keys(const ActivationStore& store) {
    return store.packed() ? store.packed()->first.i32() : nullptr;
  }
  absl::Status sum(double& value) const;  // over the cp group
};

}  // namespace memtrain::model
