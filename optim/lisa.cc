#include "optim/lisa.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/philox.h"
#include "model/model.h"

namespace memtrain::optim {

Lisa::Lisa(const OptimConfig& cfg, int64_t n_layers, uint64_t seed)
    : cfg_(cfg), K_(cfg.lisa_interval), gamma_(std::min(cfg.lisa_layers, n_layers)), n_layers_(n_layers),
      seed_(seed), block_targets_(n_layers) {
  cfg_.lisa_layers = 0;
}

absl::StatusOr<std::unique_ptr<Lisa>> Lisa::create(std::vector<OptimTarget> targets, const OptimConfig& cfg,
                                                   int64_t n_layers, uint64_t seed) {
  std::unique_ptr<Lisa> opt(new Lisa(cfg, n_layers, seed));
  for (const OptimTarget& t : targets) {
    const int64_t layer = model::block_layer_of(t.param->name);
    MEMTRAIN_CHECK_MSG(layer < n_layers, "LISA: " + t.param->name + " lies past model.n_layer");
    (layer < 0 ? opt->always_targets_ : opt->block_targets_[layer]).push_back(t);
  }
  MEMTRAIN_ASSIGN_OR_RETURN(opt->always_, create_optimizer(opt->always_targets_, opt->cfg_, seed));
  return opt;
}

std::vector<int64_t> Lisa::trained_layers(uint64_t seed, int64_t period, int64_t n_layers, int64_t count) {
  // A partial Fisher-Yates shuffle: position i swaps with a uniform one of [i, n).
  std::vector<int64_t> order(n_layers);
  std::iota(order.begin(), order.end(), 0);
  const PhiloxKey key = philox_key(seed, absl::StrCat("lisa.period.", period));
  for (int64_t i = 0; i < count; ++i) {
    const double u = philox_unit_double(key, static_cast<uint64_t>(i));
    const int64_t j = i + std::min(n_layers - i - 1, static_cast<int64_t>(u * static_cast<double>(n_layers - i)));
    std::swap(order[i], order[j]);
  }
  std::vector<int64_t> out(order.begin(), order.begin() + count);
  std::sort(out.begin(), out.end());
  return out;
}

int64_t Lisa::peak_state_bytes(const std::vector<OptimTarget>& targets, const OptimConfig& cfg) {
  OptimConfig inner = cfg;
  inner.lisa_layers = 0;
  int64_t always = 0;
  std::vector<int64_t> per_layer;
  for (const OptimTarget& t : targets) {
    const int64_t layer = model::block_layer_of(t.param->name);
    if (layer < 0) {
      always += optimizer_state_bytes(t, inner);
      continue;
    }
    if (layer >= static_cast<int64_t>(per_layer.size())) per_layer.resize(layer + 1, 0);
    per_layer[layer] += optimizer_state_bytes(t, inner);
  }
  std::sort(per_layer.rbegin(), per_layer.rend());
  const size_t k = std::min<size_t>(per_layer.size(), static_cast<size_t>(cfg.lisa_layers));
  return always + std::accumulate(per_layer.begin(), per_layer.begin() + k, int64_t{0});
}

absl::Status Lisa::start_period(int64_t period) {
  blocks_.reset();  // the last period's state goes first, so the two never coexist
  trained_ = trained_layers(seed_, period, n_layers_, gamma_);
  std::vector<OptimTarget> targets;
  for (int64_t layer : trained_)
    targets.insert(targets.end(), block_targets_[layer].begin(), block_targets_[layer].end());
  if (!targets.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(blocks_, create_optimizer(std::move(targets), cfg_, seed_));
  }
  period_ = period;
  return absl::OkStatus();
}

absl::Status Lisa::prepare_step() {
  if (step_ / K_ != period_) MEMTRAIN_RETURN_IF_ERROR(start_period(step_ / K_));
  for (int64_t layer = 0; layer < n_layers_; ++layer) {
    if (std::binary_search(trained_.begin(), trained_.end(), layer)) continue;
    for (const OptimTarget& t : block_targets_[layer]) {
      float* grad = const_cast<float*>(t.grad);  // the engine's buffer, which the norm reads next
      std::fill(grad, grad + t.n, 0.0f);
    }
  }
  return absl::OkStatus();
}

absl::Status Lisa::step(double lr) {
  MEMTRAIN_RETURN_IF_ERROR(prepare_step());  // a no-op when the trainer called it
  MEMTRAIN_RETURN_IF_ERROR(always_->step(lr));
  if (blocks_) MEMTRAIN_RETURN_IF_ERROR(blocks_->step(lr));
  ++step_;
  return absl::OkStatus();
}

absl::StatusOr<Optimizer::CheckpointStates> Lisa::checkpoint_state() {
  if (period_ < 0) MEMTRAIN_RETURN_IF_ERROR(start_period(step_ / K_));
  MEMTRAIN_ASSIGN_OR_RETURN(CheckpointStates out, always_->checkpoint_state());
  always_arrays_ = out.arrays.size();
  always_staging_ = out.staging.size();
  if (blocks_) {
    MEMTRAIN_ASSIGN_OR_RETURN(CheckpointStates b, blocks_->checkpoint_state());
    out.arrays.insert(out.arrays.end(), b.arrays.begin(), b.arrays.end());
    for (Tensor& t : b.staging) out.staging.push_back(std::move(t));
  }
  return out;
}

absl::Status Lisa::prepare_resume(int64_t steps_taken) {
  // After steps_taken steps the trained blocks are those of the period of the last step taken.
  return start_period(steps_taken == 0 ? 0 : (steps_taken - 1) / K_);
}

absl::Status Lisa::restore(const CheckpointStates& states, int64_t steps_taken) {
  CheckpointStates always, blocks;
  always.arrays.assign(states.arrays.begin(), states.arrays.begin() + always_arrays_);
  always.staging.assign(states.staging.begin(), states.staging.begin() + always_staging_);
  blocks.arrays.assign(states.arrays.begin() + always_arrays_, states.arrays.end());
  blocks.staging.assign(states.staging.begin() + always_staging_, states.staging.end());
  step_ = steps_taken;
  MEMTRAIN_RETURN_IF_ERROR(always_->restore(always, steps_taken));
  // The blocks' step count restarts with each period; the next step starts a new one when this one is complete.
  if (blocks_) MEMTRAIN_RETURN_IF_ERROR(blocks_->restore(blocks, steps_taken - period_ * K_));
  return absl::OkStatus();
}

}  // namespace memtrain::optim
