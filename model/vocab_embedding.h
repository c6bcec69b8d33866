// The token embedding, split by vocabulary rows over tp (Megatron's vocab-parallel embedding): tp rank r holds rows
// tp.part(V). A lookup reads this rank's rows, zeros for tokens held elsewhere, and sums over tp; each token has
// one non-zero term, so the sum is exact and equals the single-process lookup bit for bit. With sequence
// parallelism the sum is a reduce-scatter and a rank keeps its rows of the tokens.
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

  // tokens: (N) int32 in [0, V). Returns the tokens' embeddings (N, C), or with SP this rank's rows of them.
  absl::StatusOr<Tensor> forward(const Tensor& tokens) const;
  // weight.grad[token] += dout for this rank's vocabulary rows; dout as forward returned it.
  absl::Status backward(const Tensor& tokens, const Tensor& dout);

 private:
  // tokens as indices into this rank's rows, -1 for rows held elsewhere (the tokens themselves with one rank).
  absl::StatusOr<Tensor> local_ids(const Tensor& tokens) const;

  Param* weight_;  // not owned
  IndexRange rows_;
  TensorParallel tp_;
};

}  // namespace memtrain::model
