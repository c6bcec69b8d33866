// GaLore (Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection", 2024), as its
// reference implementation (galore_torch's AdamW) computes it: for each weight matrix G (m x n), P = the top-r
// singular vectors of the smaller side (r x min(m, n), from an SVD of the gradient through LAPACKE), recomputed
// every optim.update_proj_gap steps; AdamW moments of R = the projection of G (optim/projection.h), not reset when P
// changes; the update N = m / (sqrt(v) + eps) projected back and scaled by optim.galore_scale, W -= lr sqrt(1 -
// b2^t) / (1 - b1^t) * scale * back(N), then W -= lr * weight_decay * W. Other tensors take plain AdamW.
// optim.galore_int8_projection keeps P as int8 with an fp32 absmax per singular vector (Q-GaLore's quantized
// projections). A matrix needs its whole gradient, so matrix targets are whole tensors (under ZeRO-1/2 or tp,
// optim/matrix_owners gives each matrix whole to one rank).
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "optim/optimizer.h"
#include "optim/projection.h"

namespace memtrain::optim {

// The top-`r` singular vectors of G's smaller side (m <= n: left, else right), as the r rows of `P`, each with
// its largest-magnitude element positive (an SVD leaves signs free; this fixes them). Fails on LAPACK errors.
absl::Status top_singular_vectors(const float* G, const MatrixProjection& mp, float* P);

class GaLore final : public Optimizer {
 public:
  static absl::StatusOr<std::unique_ptr<Optimizer>> create(std::vector<OptimTarget> targets, const OptimConfig& cfg);
  // Projected matrices: P (fp32, or int8 + an fp32 per row) and two r x max(m, n) moments; others AdamW's 8 bytes.
  static int64_t state_bytes(const OptimTarget& t, const OptimConfig& cfg);
  // Projected matrices: proj (r x min(m, n): fp32, or int8 with proj_absmax, one fp32 per row), mom1 and mom2
  // (r x max(m, n), flat); others mom1 and mom2 of the parameter's shape.
  static std::vector<CheckpointArraySpec> checkpoint_layout(const model::Param& p, const OptimConfig& cfg);
  absl::Status step(double lr) override;
  absl::StatusOr<CheckpointStates> checkpoint_state() override;

  // Target i's current projection as fp32 (dequantized with int8 projections); empty when not projected. Tests.
  std::vector<float> projection(size_t i) const;

 private:
  struct State {
    MatrixProjection mp;  // mp.r > 0: projected
    Tensor proj;          // r x small(): fp32, or int8 codes
    Tensor proj_absmax;   // int8 projections: one fp32 per row of P
    Tensor mom1, mom2;    // laid out as R, or the tensor's size for AdamW
  };
  GaLore(std::vector<OptimTarget> targets, const OptimConfig& cfg) : targets_(std::move(targets)), cfg_(cfg) {}
  absl::Status step_matrix(const OptimTarget& t, State& s, double lr);
  void load_projection(const State& s, float* P) const;  // dequantizes when int8
  void store_projection(State& s, const float* P);

  std::vector<OptimTarget> targets_;
  OptimConfig cfg_;
  std::vector<State> states_;
  std::vector<float> proj_, projected_;  // scratch: P and R of the largest matrix
};

}  // namespace memtrain::optim
