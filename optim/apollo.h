// APOLLO and APOLLO-Mini (Zhu et al., "APOLLO: SGD-like Memory, AdamW-level Performance", 2024), as the reference
// implementation (apollo_torch's AdamW) computes them: for each matrix weight G (m x n), a Gaussian random
// projection P (r x the smaller side, variance 1/r) regenerated from Philox every optim.update_proj_gap steps and
// never stored; AdamW moments of the projected gradient R = P G (or G P^T) only (r x the larger side each, not reset
// when P changes) and N = m / (sqrt(v) + eps); the full-rank gradient scaled per channel (each of the larger side's
// vectors) by ||N|| / ||R|| (APOLLO) or as a whole tensor with r = 1 (APOLLO-Mini); a norm-growth limiter (the
// scaled gradient's norm grows at most optim.apollo_norm_growth per step); then W -= lr sqrt(1 - b2^t) / (1 - b1^t)
// sqrt(optim.apollo_scale) G~ and the decay W -= lr * weight_decay * W. Other tensors take plain AdamW. A matrix
// needs its whole gradient, so targets are whole tensors (under ZeRO-1/2 or tp, optim/matrix_owners gives each
// matrix whole to one rank).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/philox.h"
#include "optim/optimizer.h"
#include "optim/projection.h"

namespace memtrain::optim {

// The projection P (rows x cols, row-major) for `param` in projection period `period`: N(0, 1/rows) from the
// Philox stream keyed by (train seed, param name and period).
void apollo_projection(uint64_t seed, const std::string& param, int64_t period, int64_t rows, int64_t cols,
                       float* out);

class Apollo final : public Optimizer {
 public:
  // mini: APOLLO-Mini (tensor-wise, rank 1). seed: the run's seed, for the projections.
  static absl::StatusOr<std::unique_ptr<Optimizer>> create(std::vector<OptimTarget> targets, const OptimConfig& cfg,
                                                           bool mini, uint64_t seed);
  // Projected matrices: two r x max(m, n) moments and the limiter's norm; others AdamW's 8 bytes per element.
  static int64_t state_bytes(const OptimTarget& t, const OptimConfig& cfg, bool mini);
  // Projected matrices: mom1 and mom2 (r x max(m, n), flat) and last_norm (the limiter's float64 norm as 8 bytes);
  // others mom1 and mom2 of the parameter's shape. The projections are drawn again from the seed and the step.
  static std::vector<CheckpointArraySpec> checkpoint_layout(const model::Param& p, const OptimConfig& cfg, bool mini);
  absl::Status step(double lr) override;
  absl::StatusOr<CheckpointStates> checkpoint_state() override;

 private:
  struct State {
    MatrixProjection mp;  // mp.r > 0: projected
    Tensor mom1, mom2;    // laid out as the projected gradient, or the tensor's size for AdamW
    double last_norm = -1;        // the limiter's previous scaled-gradient norm (< 0: none yet)
  };
  Apollo(std::vector<OptimTarget> targets, const OptimConfig& cfg, bool mini, uint64_t seed)
      : targets_(std::move(targets)), cfg_(cfg), mini_(mini), seed_(seed) {}
  void step_matrix(const OptimTarget& t, State& s, double lr);

  std::vector<OptimTarget> targets_;
  OptimConfig cfg_;
  bool mini_;
  uint64_t seed_;
  std::vector<State> states_;
  std::vector<float> proj_, projected_, adam_;  // scratch: P, R and adam(R) of the largest matrix
};

}  // namespace memtrain::optim
