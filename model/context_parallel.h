// ContextParallel: how the cp dimension splits every sequence (ring attention, the RingAttention/BurstAttention
// family). The T tokens of a sequence are cut into cp * slots chunks of c tokens. With causal load balancing
// (slots = 2, Megatron's layout) rank r holds chunks r and 2cp-1-r, one early and one late, so every rank attends
// over the same number of (query, key) pairs; otherwise (slots = 1) it holds chunk r.
//
// A rank's tokens are laid out chunk-major: slot j holds chunk chunk_of(rank, j) of each of the B sequences, as
// B sequences of c tokens. The model then sees a (slots * B, c) batch; only attention (which sends key/value
// blocks around the cp ring) and the positions (learned or RoPE) depend on where those tokens sit in the sequence.
// Size 1 (the default) is the single-process layout: one slot holding the whole sequence.
//
// Unified sequence parallelism (USP) splits the cp group of size * a2a_size ranks in two: an all-to-all part
// (a2a_size consecutive ranks, Ulysses) inside a ring part (size ranks, the ring above). Each ring chunk of c
// tokens is cut into a2a_size pieces of p = c / a2a_size, and a2a rank u holds piece u of each of its ring rank's
// chunks: a (slots * B, p) batch. Around attention an all-to-all gives every a2a rank the whole chunks for
// 1/a2a_size of the heads (model/ulysses.h), which then ring over `comm`.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "model/activation_store.h"
#include "parallel/communicator.h"

namespace memtrain::model {

struct ContextParallel {
  int rank = 0, size = 1;  // on the ring
  int slots = 1;  // chunks per rank: 2 with causal load balancing
  // The ring (rank() == rank, size() == size); null when size is 1 or only shapes are wanted.
  parallel::Communicator* comm = nullptr;
  int a2a_rank = 0, a2a_size = 1;  // on the all-to-all part (parallel.cp_a2a)
  parallel::Communicator* a2a_comm = nullptr;  // null when a2a_size is 1 or only shapes are wanted
  parallel::Communicator* group = nullptr;     // the whole cp group (sum); null: `comm`

  static ContextParallel over(parallel::Communicator& cp, bool load_balanced = true) {
    return {cp.rank(), cp.size(), cp.size() > 1 && load_balanced ? 2 : 1, &cp};
  }
  // ring x a2a ranks of `whole` (rank = ring rank * a2a size + a2a rank).
  static ContextParallel over(parallel::Communicator& ring, parallel::Communicator& a2a,
                              parallel::Communicator& whole, bool load_balanced = true) {
    return {ring.rank(), ring.size(), ring.size() > 1 && load_balanced ? 2 : 1, &ring, a2a.rank(), a2a.size(), &a2a,
            &whole};
  }
  // Rank `rank` of a cp group of `size` ranks whose all-to-all parts have a2a_size ranks.
  static ContextParallel shapes_of_rank(int rank, int size, bool load_balanced = true, int a2a_size = 1) {
    const int ring = size / a2a_size;
    return {rank / a2a_size, ring, ring > 1 && load_balanced ? 2 : 1, nullptr, rank % a2a_size, a2a_size};
  }
  // The ring alone, as attention over the head-scattered chunks sees it.
  ContextParallel ring() const { return {rank, size, slots, comm}; }
  int group_size() const { return size * a2a_size; }
  // The chunk of the sequence that rank r's slot j holds.
  int64_t chunk_of(int r, int j) const { return j == 0 ? r : 2 * size - 1 - r; }
  // How many chunks a sequence is cut into; T must be a multiple of it.
  int64_t chunks() const { return int64_t{size} * slots; }
  // How many pieces (a2a_size per chunk) a sequence is cut into; T must be a multiple of it.
  int64_t pieces() const { return chunks() * a2a_size; }
  // The (B, T) batch of whole sequences -> this rank's (slots * B, T / pieces()) tokens, int32, chunk-major.
  absl::StatusOr<Tensor> local_tokens(const Tensor& whole) const;
  // Position in the sequence of each token of a (B, T) local batch (B = slots * sequences), int32, workspace.
  absl::StatusOr<Tensor> positions(int64_t B, int64_t T) const;
  // The positions of the tokens a layer runs on: packed rows' own (store.packed(), only without cp), else the above.
  absl::StatusOr<Tensor> positions(int64_t B, int64_t T, const ActivationStore& store) const {
    if (const PackedRows* packed = store.packed()) {
      MEMTRAIN_CHECK_MSG(group_size() == 1, "packed rows run without context parallelism");
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
