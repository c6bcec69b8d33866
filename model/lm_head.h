// The output head fused with the cross-entropy loss. Logits are made a chunk of rows at a time and never exist for
// the whole batch: in training, forward turns each chunk's logits straight into dL/dlogits, adds the head's weight
// gradient and saves only dL/dh (N, C), which is what backward returns. The head is the last layer, so no
// recompute policy ever runs its forward twice. Under tensor parallelism the head is vocab-parallel (as Megatron's
// cross-entropy): a rank makes the logits of its vocabulary rows only, and the softmax's row maximum, sum of
// exponentials and target logit are combined over tp, so the full logits never exist anywhere.
#pragma once

#include <algorithm>
#include <string>

#include "absl/status/statusor.h"
#include "model/activation_store.h"
#include "model/params.h"
#include "model/tensor_parallel.h"

namespace memtrain::model {

class LmHead {
 public:
  // weight: this rank's rows `vocab` of the global (V, C) weight (the token embedding when tied); not owned.
  LmHead(std::string name, Param* weight, int64_t V, int64_t C, IndexRange vocab, const TensorParallel& tp);
  // h: (N, C) final hidden states (with SP this rank's rows of them); targets: (N) int32, < 0 ignored. Returns the
  // sum of token losses. When the store keeps (training), dL/dh = grad_scale * d(sum of losses)/dh is saved (rows
  // as h) and the weight gradient added.
  absl::StatusOr<double> forward(const Tensor& h, const Tensor& targets, float grad_scale, ActivationStore& store);
  absl::StatusOr<Tensor> backward(ActivationStore& store);  // dL/dh (N, C)
  absl::StatusOr<Tensor> logits(const Tensor& h) const;    // (N, V), gathered over tp
  static int64_t saved_bytes(int64_t N, int64_t C) { return 4 * N * C; }
  // One chunk of logits, and with tp > 1 three floats per row for the combined softmax statistics.
  int64_t workspace_bytes(int64_t N) const { return 4 * std::min(N, chunk_rows()) * (Vl_ + (tp_.size > 1 ? 3 : 0)); }

 private:
  int64_t chunk_rows() const;
  // lg: (n, Vl) logits of this rank's vocabulary; replaced by dL/dlogits when training. Returns the n rows' loss
  // sum, the same on every tp rank. stats: 3n floats.
  absl::StatusOr<double> vocab_parallel_cross_entropy(float* lg, const int32_t* tgt, int64_t n, float grad_scale,
                                                      bool training, float* stats) const;

  std::string name_;
  Param* weight_;
  int64_t V_, C_;
  IndexRange vocab_;
  int64_t Vl_;  // this rank's vocabulary rows
  TensorParallel tp_;
};

}  // namespace memtrain::model
