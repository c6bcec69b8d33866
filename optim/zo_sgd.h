// Zeroth-order SGD, MeZO (Malladi et al., NeurIPS 2023): SPSA with one random direction per step and no backward.
// Step t, with z ~ N(0, I) over every trained element:
//   l+ = L(theta + eps z), l- = L(theta - eps z)    (two forwards on the same batch; theta restored afterwards)
//   g  = (l+ - l-) / (2 eps)                         (the projected gradient, a scalar)
//   theta = theta - lr * (g z + wd * theta)          (wd only where optim decays the parameter: L2, as MeZO's SGD)
// z is never stored: element i of a parameter's direction is Philox keyed by (run seed, step, parameter name) at
// the element's global index, regenerated for each of the four passes (+eps, -2 eps, +eps, update), on any rank
// for any shard or tensor-parallel part. So the state is nothing at all, every data-parallel rank draws the same
// direction without communicating, and a run on any mesh perturbs exactly the elements one process does.
// The trainer (trainer/train_loop.cc) runs the forwards; under data parallelism l+ and l- are summed over ranks
// (one direction on the global batch).
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/philox.h"
#include "optim/optimizer.h"

namespace memtrain::optim {

class ZoSgd final : public Optimizer {
 public:
  // targets: the pieces this rank updates; perturbed: every value this rank stores and forward reads (the same
  // pieces without sharding; all of each tensor under ZeRO-1/2, whose ranks update slices of full copies).
  static std::unique_ptr<ZoSgd> create(std::vector<OptimTarget> targets, std::vector<OptimTarget> perturbed,
                                       const OptimConfig& cfg, uint64_t seed);
  // value += scale * z on every perturbed piece, z the direction of step steps_taken().
  void perturb(double scale);
  // The scalar (l+ - l-) / (2 eps) the next step() applies.
  void set_projected_gradient(double g) { projected_gradient_ = g; }
  // The Philox stream of p's direction at step `step`.
  static PhiloxKey direction_key(const model::Param& p, uint64_t seed, int64_t step);
  // Elements [offset, offset + n) of p's direction (local elements of this rank's tensor part).
  static void direction(const model::Param& p, PhiloxKey key, int64_t offset, int64_t n, float* out);
  static void direction(const model::Param& p, uint64_t seed, int64_t step, int64_t offset, int64_t n, float* out) {
    direction(p, direction_key(p, seed, step), offset, n, out);
  }

  absl::Status step(double lr) override;
  absl::StatusOr<CheckpointStates> checkpoint_state() override { return CheckpointStates{}; }

 private:
  ZoSgd(std::vector<OptimTarget> targets, std::vector<OptimTarget> perturbed, const OptimConfig& cfg, uint64_t seed)
      : targets_(std::move(targets)), perturbed_(std::move(perturbed)), cfg_(cfg), seed_(seed) {}
  // value = keep * value + scale * z over the pieces, in parallel blocks.
  void add_direction(const std::vector<OptimTarget>& pieces, double scale, bool decay, double lr);

  std::vector<OptimTarget> targets_, perturbed_;
  OptimConfig cfg_;
  uint64_t seed_;
  double projected_gradient_ = 0;
};

}  // namespace memtrain::optim
