// HostSwap (memory.activations = swap_host): saved tensors copied into host buffers of category `swap` on the
// tier's thread. With the CUDA backend (issue 13) these are pinned buffers filled by copy streams and the device
// memory is what it saves; on the CPU backend activations already live in host memory, so it only moves bytes
// from `activations` to `swap` (the mechanism, tested bit for bit, and a baseline for swap_ssd).
#pragma once

#include <map>
#include <memory>

#include "offload/async_swap.h"

namespace memtrain::offload {

class HostSwap final : public AsyncSwap {
 public:
  static std::unique_ptr<HostSwap> create();
  ~HostSwap() override { stop(); }
  absl::string_view name() const override { return "swap_host"; }

 private:
  HostSwap() = default;
  absl::Status store(uint64_t ticket, const Tensor& t) override;
  absl::Status load(uint64_t ticket, const Tensor& into) override;
  void free(uint64_t ticket) override { copies_.erase(ticket); }

  std::map<uint64_t, Tensor> copies_;  // touched by the worker only
};

}  // namespace memtrain::offload
