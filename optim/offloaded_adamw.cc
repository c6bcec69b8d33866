#include "optim/offloaded_adamw.h"

#include <algorithm>

#include "optim/adamw.h"

namespace memtrain::optim {

std::vector<OffloadedAdamW::Group> OffloadedAdamW::groups_of(const std::vector<OptimTarget>& targets) {
  std::vector<Group> groups;
  for (size_t k = 0; k < targets.size(); ++k) {
    const OptimTarget& t = targets[k];
    for (int64_t at = 0; at < t.n; at += kGroup) {
      OptimTarget piece = t;
      piece.value = t.value + at;
      piece.grad = t.grad + at;
      piece.n = std::min(kGroup, t.n - at);
      piece.offset = t.offset + at;
      groups.push_back({piece, k});
    }
  }
  return groups;
}

int64_t OffloadedAdamW::peak_state_bytes(const std::vector<OptimTarget>& targets) {
  const std::vector<Group> g = groups_of(targets);
  int64_t peak = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    int64_t n = g[i].target.n;
    if (i > 0) n += g[i - 1].target.n;
    if (i + 1 < g.size()) n += g[i + 1].target.n;
    peak = std::max(peak, 8 * n);
  }
  return peak;
}

absl::StatusOr<std::unique_ptr<OffloadedAdamW>> OffloadedAdamW::create(std::vector<OptimTarget> targets,
                                                                      const OptimConfig& cfg, SwapTier* tier) {
  MEMTRAIN_CHECK(tier != nullptr);
  std::unique_ptr<OffloadedAdamW> opt(new OffloadedAdamW(cfg, tier));
  opt->groups_ = groups_of(targets);
  opt->targets_ = std::move(targets);
  return opt;
}

OffloadedAdamW::~OffloadedAdamW() {
  for (Group& g : groups_) {
    if (g.ticket == 0) continue;
    tier_->wait(g.ticket).IgnoreError();
    tier_->release(g.ticket);
  }
}

absl::StatusOr<Tensor> OffloadedAdamW::fetch(Group& g) {
  if (g.ticket == 0) return Tensor::zeros({2 * g.target.n}, DType::kF32, MemCategory::kOptimizerState);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor moments, Tensor::empty({2 * g.target.n}, DType::kF32, MemCategory::kOptimizerState));
  MEMTRAIN_RETURN_IF_ERROR(tier_->read(g.ticket, moments));
  return moments;
}

absl::Status OffloadedAdamW::finish_fetch(Group& g) {
  if (g.ticket == 0) return absl::OkStatus();
  MEMTRAIN_RETURN_IF_ERROR(tier_->wait(g.ticket));
  tier_->release(g.ticket);
  g.ticket = 0;
  return absl::OkStatus();
}

absl::Status OffloadedAdamW::write_back(Group& g, const Tensor& moments) {
  MEMTRAIN_ASSIGN_OR_RETURN(g.ticket, tier_->write(moments));
  return absl::OkStatus();
}

absl::Status OffloadedAdamW::step(double lr) {
  ++step_;
  if (groups_.empty()) return absl::OkStatus();
  // buffers: [i - 1] being written, [i] updated, [i + 1] being read.
  std::vector<Tensor> buffers(groups_.size());
  MEMTRAIN_ASSIGN_OR_RETURN(buffers[0], fetch(groups_[0]));
  for (size_t i = 0; i < groups_.size(); ++i) {
    MEMTRAIN_RETURN_IF_ERROR(finish_fetch(groups_[i]));
    if (i + 1 < groups_.size()) {
      MEMTRAIN_ASSIGN_OR_RETURN(buffers[i + 1], fetch(groups_[i + 1]));
    }
    const OptimTarget& t = groups_[i].target;
    const size_t k = groups_[i].index;
    if (i == 0 || groups_[i - 1].index != k) MEMTRAIN_RETURN_IF_ERROR(before_target(k));
    adamw_update(t, buffers[i].f32(), buffers[i].f32() + t.n, cfg_, lr, step_);
    if (i + 1 == groups_.size() || groups_[i + 1].index != k) MEMTRAIN_RETURN_IF_ERROR(after_target(k));
    MEMTRAIN_RETURN_IF_ERROR(write_back(groups_[i], buffers[i]));
    if (i > 0) {  // the group before is on disk by now, or waited for: its buffer goes
      MEMTRAIN_RETURN_IF_ERROR(tier_->wait(groups_[i - 1].ticket));
      buffers[i - 1] = Tensor();
    }
  }
  MEMTRAIN_RETURN_IF_ERROR(tier_->wait(groups_.back().ticket));
  return finish_targets();
}

absl::StatusOr<Optimizer::CheckpointStates> OffloadedAdamW::checkpoint_state() {
  // m and v of every target, whole, in staging arrays: read back from the groups (zeros for unwritten ones).
  CheckpointStates out;
  size_t g = 0;
  for (const OptimTarget& t : targets_) {
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor m, Tensor::zeros({t.n}, DType::kF32, MemCategory::kWorkspace));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor v, Tensor::zeros({t.n}, DType::kF32, MemCategory::kWorkspace));
    for (int64_t at = 0; at < t.n; at += kGroup, ++g) {
      Group& group = groups_[g];
      if (group.ticket == 0) continue;
      MEMTRAIN_ASSIGN_OR_RETURN(Tensor moments, Tensor::empty({2 * group.target.n}, DType::kF32, MemCategory::kWorkspace));
      MEMTRAIN_RETURN_IF_ERROR(tier_->read(group.ticket, moments));
      MEMTRAIN_RETURN_IF_ERROR(tier_->wait(group.ticket));
      std::copy_n(moments.f32(), group.target.n, m.f32() + at);
      std::copy_n(moments.f32() + group.target.n, group.target.n, v.f32() + at);
    }
    out.arrays.push_back({t, "m", false, DType::kF32, m.f32()});
    out.arrays.push_back({t, "v", false, DType::kF32, v.f32()});
    out.staging.push_back(std::move(m));
    out.staging.push_back(std::move(v));
  }
  return out;
}

absl::Status OffloadedAdamW::restore(const CheckpointStates& states, int64_t steps_taken) {
  step_ = steps_taken;
  size_t g = 0;
  for (size_t k = 0; k < targets_.size(); ++k) {
    const float* m = static_cast<const float*>(states.arrays[2 * k].data);
    const float* v = static_cast<const float*>(states.arrays[2 * k + 1].data);
    for (int64_t at = 0; at < targets_[k].n; at += kGroup, ++g) {
      Group& group = groups_[g];
      const int64_t n = group.target.n;
      MEMTRAIN_ASSIGN_OR_RETURN(Tensor moments, Tensor::empty({2 * n}, DType::kF32, MemCategory::kOptimizerState));
      std::copy_n(m + at, n, moments.f32());
      std::copy_n(v + at, n, moments.f32() + n);
      if (group.ticket != 0) {
        MEMTRAIN_RETURN_IF_ERROR(tier_->wait(group.ticket));
        tier_->release(group.ticket);
      }
      MEMTRAIN_RETURN_IF_ERROR(write_back(group, moments));
      MEMTRAIN_RETURN_IF_ERROR(tier_->wait(group.ticket));
    }
  }
  return absl::OkStatus();
}

}  // namespace memtrain::optim
