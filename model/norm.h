// LayerNorm (GPT-2) and RMSNorm (LLaMA) layers over the last dim; each saves its input and per-row statistics.
// With sequence parallelism a rank normalises its own rows, so its weight gradient is a part of a sum over tp.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "model/activation_store.h"
#include "model/params.h"
#include "model/tensor_parallel.h"

namespace memtrain::model {

class LayerNorm {
 public:
  // Registers `name.weight` (and `name.bias`), whole on every tp rank.
  LayerNorm(ParamSet& params, std::string name, int64_t C, bool bias, float eps, const TensorParallel& tp);
  // x, y, dy, dx: (N, C). Saves x, mean and rstd (N).
  absl::StatusOr<Tensor> forward(const Tensor& x, ActivationStore& store) const;
  absl::StatusOr<Tensor> backward(const Tensor& dy, ActivationStore& store);
  // Bytes forward saves for N rows, besides x (which the caller owns and accounts).
  static int64_t saved_bytes(int64_t N) { return 2 * N * 4; }

 private:
  std::string name_;
  Param* weight_;  // not owned: the ParamSet outlives layers
  Param* bias_;
  int64_t C_;
  float eps_;
  TensorParallel tp_;
};

class RmsNorm {
 public:
  RmsNorm(ParamSet& params, std::string name, int64_t C, float eps, const TensorParallel& tp);
  // x, y, dy, dx: (N, C). Saves x and rstd (N).
  absl::StatusOr<Tensor> forward(const Tensor& x, ActivationStore& store) const;
  absl::StatusOr<Tensor> backward(const Tensor& dy, ActivationStore& store);
  static int64_t saved_bytes(int64_t N) { return N * 4; }

 private:
  std::string name_;
  Param* weight_;
  int64_t C_;
  float eps_;
  TensorParallel tp_;
};

}  // namespace memtrain::model
