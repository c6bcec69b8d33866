// 8-bit AdamW (Dettmers et al., "8-bit Optimizers via Block-wise Quantization"; bitsandbytes' AdamW8bit): both
// moments stored as 8-bit codes of the dynamic code books (signed for m, unsigned for v) with one fp32 absmax per
// block of 256 elements of the tensor, about 2 bytes of state per parameter instead of 8. Tensors under 4096
// elements (norms, biases) keep fp32 moments, as bitsandbytes does. Each step dequantizes a block, runs the fp32
// AdamW update on it (core/cpu/adamw.h) and requantizes it with the block's new absmax.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "optim/optimizer.h"

namespace memtrain::optim {

class AdamW8bit final : public Optimizer {
 public:
  static constexpr int64_t kBlock = 256;
  static constexpr int64_t kMinQuantized = 4096;  // tensors with fewer elements keep fp32 moments

  static absl::StatusOr<std::unique_ptr<Optimizer>> create(std::vector<OptimTarget> targets, const OptimConfig& cfg);
  // Two fp32 moments, or two codes per element and two fp32 absmax per block touched.
  static int64_t state_bytes(const OptimTarget& t);
  // By the global tensor's size, so that every piece of it, and every mesh, decides alike.
  static bool quantized(const model::Param& p) { return shape_numel(p.shape) >= kMinQuantized; }
  static bool quantized(const OptimTarget& t) { return quantized(*t.param); }
  // Quantized tensors: m_codes and v_codes (u8) and m_absmax and v_absmax (f32: each element's block's absmax),
  // all of the parameter's shape, so that any mesh finds each element's exact state (a mesh with other blocks
  // requantizes it); small tensors: m and v.
  static std::vector<CheckpointArraySpec> checkpoint_layout(const model::Param& p);
  absl::Status step(double lr) override;
  bool takes_value_residency() const override { return true; }
  absl::StatusOr<CheckpointStates> checkpoint_state() override;
  absl::Status restore(const CheckpointStates& states, int64_t steps_taken) override;

  // Target i's moments as fp32 values (tests): dequantized codes, or the fp32 moments of a small tensor.
  std::vector<float> moment(size_t i, bool second) const;

 private:
  struct State {
    bool quantized = false;
    Tensor m, v;                // fp32 moments (small tensors) or uint8 codes
    Tensor m_absmax, v_absmax;  // quantized: one fp32 per block touched
  };
  AdamW8bit(std::vector<OptimTarget> targets, const OptimConfig& cfg) : targets_(std::move(targets)), cfg_(cfg) {}

  std::vector<OptimTarget> targets_;
  OptimConfig cfg_;
  std::vector<State> states_;  // parallel to targets_
};

}  // namespace memtrain::optim
