// SLTrain's sparse part (Han et al. 2024, "SLTrain: a sparse plus low-rank approach for parameter and memory
// efficient pretraining"): a block projection's weight is W = (alpha / r) B A + S, where S is sparse on a support
// fixed before training. The support keeps each element of the global weight (flat, in the layout Hugging Face
// stores: (out, in), or GPT-2's Conv1D (in, out)) with probability delta, independently: drawn by geometric gaps
// from Philox keyed by the weight's name, so every rank, mesh and run draws the same one. (The reference draws
// exactly floor(delta * numel) positions with a fixed seed; this is the same uniform density.) The low-rank part is
// a trainable LoRA adapter (model/lora.h's kernels, through make_linear); this file holds the sparse part: its values
// as a parameter and, per rank, where each of its values sits in the rank's part of W.
#pragma once

#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/params.h"

namespace memtrain::model {

struct SparseWeight {
  Param* values = nullptr;  // global shape (nnz); this rank holds the values inside its part of W
  Tensor positions;          // int32, one per local value: its flat offset in this rank's W tensor
};

// The support of weight `name` with `numel` elements: ascending global flat offsets.
std::vector<int64_t> sltrain_support(const std::string& name, int64_t numel, double delta);

// Registers `name` + ".sltrain.values" for the weight `name` would be (global `shape`, split as `weight_split`),
// initialised uniform in [-bound, bound], split so that each rank holds the values of its part of W.
SparseWeight make_sparse_weight(ParamSet& params, const std::string& name, const Shape& shape,
                                const TpSplit& weight_split, double delta, float bound);

// W (this rank's part, `numel` elements) = S: zeros with the values at their positions.
void sparse_scatter(const SparseWeight& s, float* W, int64_t numel);

// The values' gradient from a projection's backward: grad[k] += sum_n dy[n, o_k] * x[n, i_k], where (o_k, i_k) is
// value k's (output, input) in this rank's W: x (N, in) and dy (N, out) of this rank; in_out: W stored (in, out).
absl::Status sparse_values_grad(const SparseWeight& s, const float* x, const float* dy, int64_t N, int64_t in,
                                int64_t out, bool in_out, float* grad, ThreadPool& pool);

}  // namespace memtrain::model
