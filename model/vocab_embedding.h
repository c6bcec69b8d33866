// The token embedding, split by vocabulary rows over tp (Megatron's vocab-parallel embedding): tp rank r holds rows
// tp.part(V). A lookup reads this rank's rows, zeros for tokens held elsewhere, and sums over tp; each token has
// one non-zero term, so the sum is exact and equals the single-process lookup bit for bit.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "model/params.h"
#include "model/tensor_parallel.h"

namespace memtrain::model {

class VocabEmbedding {
 public:
  // Registers `name` (V, C), normal(0, std).
  VocabEmbedding(ParamSet& params, const std::string& name, int64_t V, int64_t C, float std, const TensorParallel& tp);
  Param* weight() const { return weight_; }
  IndexRange rows() const { return rows_; }

  // tokens: (N) int32 in [0, V); out (N, C) = the rows of tokens.
  absl::Status forward(const Tensor& tokens, Tensor& out) const;
  // weight.grad[token] += dout (N, C) for this rank's rows.
  absl::Status backward(const Tensor& tokens, const Tensor& dout);

 private:
  // tokens as indices into this rank's rows, -1 for rows held elsewhere.
  absl::StatusOr<Tensor> local_ids(const Tensor& tokens) const;

  Param* weight_;  // not owned
  IndexRange rows_;
  TensorParallel tp_;
};

}  // namespace memtrain::model
