// LISA, layerwise importance sampled AdamW (Pan et al., NeurIPS 2024): full-parameter training in which the
// embeddings, the final norm and the head always train and, of the N transformer blocks, only gamma drawn
// uniformly without replacement for each period of K optimizer steps (periods start at steps 0, K, 2K, ...; the
// draw is Philox keyed by the run's seed and the period, so every rank draws the same blocks). As LMFlow's
// intended semantics have it, the always-trained tensors keep one optimizer state for the whole run, while a
// block's state exists only during a period it trains in, created fresh (zero moments, step count 0) at the period's
// start and freed at its end, even when the block is drawn again. The other blocks' gradients are zeroed before
// the norm (prepare_step), so clipping counts what trains. The inner optimizer is adamw or adamw8bit.
// Known limit: backward still computes, and data parallelism still reduces, every block's gradient into the
// engine's buffers; what LISA saves here is the optimizer state (and its update time) of the blocks not drawn.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "optim/optimizer.h"

namespace memtrain::optim {

class Lisa final : public Optimizer {
 public:
  // targets: this rank's (any pieces); n_layers: the model's blocks (model.n_layer), of which lisa_layers train.
  static absl::StatusOr<std::unique_ptr<Lisa>> create(std::vector<OptimTarget> targets, const OptimConfig& cfg,
                                                      int64_t n_layers, uint64_t seed);
  // The blocks that train in `period`, ascending: `count` of [0, n_layers) without replacement.
  static std::vector<int64_t> trained_layers(uint64_t seed, int64_t period, int64_t n_layers, int64_t count);
  // The most optimizer state `targets` hold at once under LISA: the always-trained ones' and, over every possible
  // draw, the lisa_layers blocks with the most (the memory plan's figure).
  static int64_t peak_state_bytes(const std::vector<OptimTarget>& targets, const OptimConfig& cfg);

  absl::Status prepare_step() override;
  absl::Status step(double lr) override;
  absl::StatusOr<CheckpointStates> checkpoint_state() override;
  absl::Status prepare_resume(int64_t steps_taken) override;
  absl::Status restore(const CheckpointStates& states, int64_t steps_taken) override;
  const std::vector<int64_t>& trained() const { return trained_; }  // this period's blocks

 private:
  Lisa(const OptimConfig& cfg, int64_t n_layers, uint64_t seed);
  // Frees the trained blocks' state and creates it fresh for `period`'s.
  absl::Status start_period(int64_t period);

  OptimConfig cfg_;    // the inner optimizer's (lisa_layers = 0)
  int64_t K_, gamma_, n_layers_;
  uint64_t seed_;
  std::vector<OptimTarget> always_targets_;
  std::vector<std::vector<OptimTarget>> block_targets_;  // by global layer; empty for blocks on other ranks
  std::unique_ptr<Optimizer> always_, blocks_;           // blocks_: null when this rank holds none of the drawn
  std::vector<int64_t> trained_;
  int64_t period_ = -1;
  size_t always_arrays_ = 0, always_staging_ = 0;  // always_'s part of the last checkpoint_state()
};

}  // namespace memtrain::optim
