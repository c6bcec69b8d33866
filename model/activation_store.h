// ActivationStore: the one seam through which every layer keeps what its backward needs. Layers never hold
// activations in members; the store's policy decides how saved tensors are kept. A store that does not keep
// (evaluation, sampling) drops everything it is given; a keeping one drops what it is given while discarding (the
// first forward of a recompute segment, whose backward runs the forward again; activation_policy.h).
//
// It also holds the weight-gradient products a zero-bubble pipeline defers: layers hand them to weight_grad(),
// which runs them at once unless deferring is on; then run_weight_grads() runs them later, in the same order,
// and the tensors they captured stay alive until then.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace memtrain::model {

// Rows packed from several examples (fine-tuning data): each token's position within its example and the row
// index of its example's first token, (B, T) int32 each. Attention keeps examples apart by it; learned and rotary
// positions restart at each example.
struct PackedRows {
  Tensor positions, first;
};

class ActivationStore {
 public:
  explicit ActivationStore(bool keep = true) : keep_(keep) {}
  ActivationStore(const ActivationStore&) = delete;
  ActivationStore& operator=(const ActivationStore&) = delete;

  bool keeping() const { return keep_; }
  void set_discarding(bool on) { discarding_ = on; }
  // Keys are scoped by the layer's global name ("transformer.h.3.attn/qkv"); saving a key twice is a bug.
  absl::Status save(const std::string& key, const Tensor& t);
  // Fetches and releases. NotFound names the key.
  absl::StatusOr<Tensor> take(const std::string& key);

  bool empty() const { return saved_.empty(); }
  size_t size() const { return saved_.size(); }
  std::vector<std::string> keys() const;
  void clear() { saved_.clear(); }

  // The layout of the batch this store's forward and backward run on; none (nullptr) for plain sequences.
  void set_packed(PackedRows rows) { packed_ = std::move(rows); }
  const PackedRows* packed() const { return packed_.positions.defined() ? &packed_ : nullptr; }

  // Training randomness (LoRA dropout): which micro-batch of the run this store's forward is, counted over the
  // global batch (step * micro-batches per step + the micro-batch's index among all data-parallel ranks'), so any
  // mesh draws the masks one process would. Unset: no dropout (evaluation, sampling).
  void set_dropout(uint64_t seed, int64_t micro_batch) { dropout_ = {seed, micro_batch}; }
  struct DropoutStream {
    uint64_t seed = 0;
    int64_t micro_batch = -1;
  };
  const DropoutStream* dropout() const { return dropout_.micro_batch >= 0 ? &dropout_ : nullptr; }

  void defer_weight_grads(bool on) { defer_ = on; }
  bool deferring_weight_grads() const { return defer_; }
  absl::Status weight_grad(std::function<absl::Status()> fn);
  absl::Status run_weight_grads();
  bool has_weight_grads() const { return !weight_grads_.empty(); }

 private:
  bool keep_;
  bool discarding_ = false;
  bool defer_ = false;
  std::map<std::string, Tensor> saved_;
  PackedRows packed_;
  DropoutStream dropout_;
  std::vector<std::function<absl::Status()>> weight_grads_;
};

}  // namespace memtrain::model
