// AdamW with its moments in a swap tier (offload.optimizer = "ssd", ZeRO-Infinity's optimizer offload): the state
// lives on disk, cut into groups of at most kGroup elements (a target split as needed; AdamW works element by
// element, so the update is bit for bit AdamW's), and each step streams it through memory: group i is updated
// while group i + 1 is read and group i - 1 written back, so at most three groups' moments are in memory (category
// optimizer_state), whatever the model's size. A group never written (the first step) starts from zeros.
// Checkpoints read the state back into staging arrays; a resume writes them out again.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/swap_tier.h"
#include "optim/optimizer.h"

namespace memtrain::optim {

class OffloadedAdamW final : public Optimizer {
 public:
  static constexpr int64_t kGroup = int64_t{1} << 20;  // elements per group: 8 MiB of moments
  // `tier` must outlive the optimizer.
  static absl::StatusOr<std::unique_ptr<OffloadedAdamW>> create(std::vector<OptimTarget> targets,
                                                                const OptimConfig& cfg, SwapTier* tier);
  ~OffloadedAdamW() override;

  absl::Status step(double lr) override;
  bool takes_value_residency() const override { return true; }
  absl::StatusOr<CheckpointStates> checkpoint_state() override;
  absl::Status restore(const CheckpointStates& states, int64_t steps_taken) override;

  // The optimizer_state peak of a step over `targets`: the largest sum of three consecutive groups' moments.
  static int64_t peak_state_bytes(const std::vector<OptimTarget>& targets);

 private:
  struct Group {
    OptimTarget target;  // a piece of one of the targets given
    size_t index = 0;    // which one
    uint64_t ticket = 0;  // 0: never written (zeros)
  };
  OffloadedAdamW(const OptimConfig& cfg, SwapTier* tier) : cfg_(cfg), tier_(tier) {}
  static std::vector<Group> groups_of(const std::vector<OptimTarget>& targets);
  // Starts bringing group g's moments [m; v] into a new buffer (zeros for a group never written).
  absl::StatusOr<Tensor> fetch(Group& g);
  absl::Status finish_fetch(Group& g);  // waits for its read; the disk copy is released
  absl::Status write_back(Group& g, const Tensor& moments);

  OptimConfig cfg_;
  SwapTier* tier_;
  std::vector<Group> groups_;
  std::vector<OptimTarget> targets_;
};

}  // namespace memtrain::optim
