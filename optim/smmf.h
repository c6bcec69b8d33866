// SMMF, square-matricized momentum factorization (Park & Oh, AAAI 2025): Adam's two moments of any tensor, each
// kept as a rank-1 non-negative factorization of the tensor reshaped to its most nearly square matrix
// (rows x cols = numel, cols the largest divisor <= sqrt(numel)), the first moment's signs as one bit per element.
// Per tensor 2 (rows + cols) floats + numel / 8 bytes instead of AdamW's 8 bytes per element.
// A step, per the paper's algorithm (no bias correction):
//   M = S o (r_m c_m^T), V = r_v c_v^T                                  (decompress)
//   M = b1_t M + (1 - b1_t) G,  b1_t = beta1 * growth^(t-1)
//   V = b2_t V + (1 - b2_t) G^2, b2_t = 1 - t^decay_rate
//   W = W - lr * wd * W - lr * M / (sqrt(V) + eps)                      (decoupled weight decay)
//   S = [M > 0]; r, c = row sums, column sums of |M| (of V), c divided by its sum  (compress: r c^T keeps the sum)
// Done a row at a time, so the full M and V never exist: scratch is two column-length accumulators.
// The factorization spans the whole tensor, so targets are whole tensors (under ZeRO-1/2 or tp,
// optim/matrix_owners gives each to one rank).
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "optim/optimizer.h"

namespace memtrain::optim {

class Smmf final : public Optimizer {
 public:
  // The matrix a tensor of n elements is viewed as: {rows, cols}, rows >= cols, cols the largest divisor of n that
  // is <= sqrt(n).
  static std::pair<int64_t, int64_t> square_shape(int64_t n);
  // Fails naming optim.name when a target is not a whole tensor.
  static absl::StatusOr<std::unique_ptr<Optimizer>> create(std::vector<OptimTarget> targets, const OptimConfig& cfg);
  // 8 (rows + cols) bytes of factors + ceil(numel / 8) bytes of signs.
  static int64_t state_bytes(const OptimTarget& t);
  // m_row, m_col, m_sign (bytes, bit k of byte i: element 8 i + k is positive), v_row, v_col.
  static std::vector<CheckpointArraySpec> checkpoint_layout(const model::Param& p);
  absl::Status step(double lr) override;
  absl::StatusOr<CheckpointStates> checkpoint_state() override;

 private:
  struct State {
    int64_t rows = 0, cols = 0;
    Tensor m_row, m_col, m_sign, v_row, v_col;
  };
  Smmf(std::vector<OptimTarget> targets, const OptimConfig& cfg) : targets_(std::move(targets)), cfg_(cfg) {}
  void step_target(const OptimTarget& t, State& s, double lr);

  std::vector<OptimTarget> targets_;
  OptimConfig cfg_;
  std::vector<State> states_;
  std::vector<double> m_col_sum_, v_col_sum_;  // scratch, the widest target's cols
};

}  // namespace memtrain::optim
