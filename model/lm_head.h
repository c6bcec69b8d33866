// The output head fused with the cross-entropy loss. Logits are made a chunk of rows at a time and never exist for
// the whole batch: in training, forward turns each chunk's logits straight into dL/dlogits, adds the head's weight
// gradient and saves only dL/dh (N, C), which is what backward returns. The head is the last layer, so no
// recompute policy ever runs its forward twice.
#pragma once

#include <algorithm>
#include <string>

#include "absl/status/statusor.h"
#include "model/activation_store.h"
#include "model/params.h"

namespace memtrain::model {

class LmHead {
 public:
  // weight: (V, C), the token embedding when tied; not owned.
  LmHead(std::string name, Param* weight, int64_t V, int64_t C);
  // h: (N, C) final hidden states; targets: (N) int32, < 0 ignored. Returns the sum of token losses. When the
  // store keeps (training), dL/dh = grad_scale * d(sum of losses)/dh is saved and the weight gradient added.
  absl::StatusOr<double> forward(const Tensor& h, const Tensor& targets, float grad_scale, ActivationStore& store);
  absl::StatusOr<Tensor> backward(ActivationStore& store);  // dL/dh (N, C)
  absl::StatusOr<Tensor> logits(const Tensor& h) const;    // (N, V)
  static int64_t saved_bytes(int64_t N, int64_t C) { return 4 * N * C; }
  int64_t workspace_bytes(int64_t N) const { return 4 * std::min(N, chunk_rows()) * V_; }  // one logits chunk

 private:
  int64_t chunk_rows() const;

  std::string name_;
  Param* weight_;
  int64_t V_, C_;
};

}  // namespace memtrain::model
