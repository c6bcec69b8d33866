// ActivationStore: the one seam through which every layer keeps what its backward needs. Layers never hold
// activations in members; the store's policy decides how saved tensors are kept (issue 10 adds recompute, host and
// SSD swapping). A store that does not keep (evaluation, sampling) drops everything it is given.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace memtrain::model {

class ActivationStore {
 public:
  explicit ActivationStore(bool keep = true) : keep_(keep) {}
  ActivationStore(const ActivationStore&) = delete;
  ActivationStore& operator=(const ActivationStore&) = delete;

  bool keeping() const { return keep_; }
  // Keys are scoped by the layer's global name ("transformer.h.3.attn/qkv"); saving a key twice is a bug.
  absl::Status save(const std::string& key, const Tensor& t);
  // Fetches and releases. NotFound names the key.
  absl::StatusOr<Tensor> take(const std::string& key);

  bool empty() const { return saved_.empty(); }
  size_t size() const { return saved_.size(); }
  std::vector<std::string> keys() const;
  void clear() { saved_.clear(); }

 private:
  bool keep_;
  std::map<std::string, Tensor> saved_;
};

}  // namespace memtrain::model
