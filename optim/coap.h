// COAP, correlation-aware gradient projection (Xiao et al., CVPR 2025), as its reference implementation
// (bytedance/coap's AdamW) computes it. Each weight matrix's gradient is seen as X (L x s: the larger side by the
// smaller, G or G^T as optim/projection.h orients it; a square matrix on its columns, as COAP does) through
// P (r x s): R = X P^T, AdamW moments M, V of R, W -= step_size * scale * back(M / (sqrt(V) + eps)), then the
// decoupled decay. P changes at the step index k (0, 1, ...):
//   k = 0:                       P = RandSVD(X, Omega_0), Omega_0 ~ N(0, 1) (s x r) from a fixed seed (3407)
//   k % T_u == 0, k % (lambda T_u) == 0: P = RandSVD(X, P^T)      (recalibration)
//   k % T_u == 0 otherwise:      one SGD step on P (rate 0.1, gradient norm clipped to 1) for the loss
//       l(P) = mean((X P^T P - X)^2) * (1 - mean over rows c of cos((M_X P)_c, X_c)),  M_X = M as L x r
// RandSVD(X, Omega): Y = X Omega, Q = qr(Y), the top r right singular vectors of Q^T X: one pass, no
// oversampling. The moments are kept as they are when P changes (the reference's default), P is not
// re-orthonormalised after its SGD step. SVD signs are free: a first P has each row's largest element positive,
// a recalibrated row the sign that agrees with the old one. Other tensors take plain AdamW.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "optim/optimizer.h"
#include "optim/projection.h"

namespace memtrain::optim {

// The orientation and rank COAP uses for a weight matrix of this shape.
MatrixProjection coap_projection(const Shape& shape, const OptimConfig& cfg);

// l(P) and dl/dP (r x s) for X (L x s, row-major), P (r x s) and M_X (L x r), in float64. Tests compare it with
// finite differences.
double coap_projection_loss(const float* X, const float* P, const float* M, int64_t L, int64_t s, int64_t r,
                            std::vector<double>* grad);

class Coap final : public Optimizer {
 public:
  static absl::StatusOr<std::unique_ptr<Optimizer>> create(std::vector<OptimTarget> targets, const OptimConfig& cfg);
  // Projected matrices: P (r x s) and two r x L moments in fp32; others AdamW's 8 bytes per element.
  static int64_t state_bytes(const OptimTarget& t, const OptimConfig& cfg);
  // Projected matrices: proj (r x s), mom1 and mom2 (r x L, flat, in R's layout); others mom1 and mom2.
  static std::vector<CheckpointArraySpec> checkpoint_layout(const model::Param& p, const OptimConfig& cfg);
  absl::Status step(double lr) override;
  absl::StatusOr<CheckpointStates> checkpoint_state() override;
  // Target i's projection (r x s); empty when not projected. Tests.
  std::vector<float> projection(size_t i) const;

 private:
  struct State {
    MatrixProjection mp;  // mp.r > 0: projected
    Tensor proj, mom1, mom2;
  };
  Coap(std::vector<OptimTarget> targets, const OptimConfig& cfg) : targets_(std::move(targets)), cfg_(cfg) {}
  absl::Status update_projection(const OptimTarget& t, State& s, int64_t k);
  void step_matrix(const OptimTarget& t, State& s, double lr);

  std::vector<OptimTarget> targets_;
  OptimConfig cfg_;
  std::vector<State> states_;
  std::vector<float> projected_;  // scratch: R of the largest matrix
};

}  // namespace memtrain::optim
