#include "offload/host_swap.h"

#include <cstring>

#include "core/status.h"

namespace memtrain::offload {

std::unique_ptr<HostSwap> HostSwap::create() {
  std::unique_ptr<HostSwap> tier(new HostSwap());
  tier->start();
  return tier;
}

absl::Status HostSwap::store(uint64_t ticket, const Tensor& t) {
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor copy, Tensor::empty_like(t, MemCategory::kSwap));
  std::memcpy(copy.raw(), t.raw(), t.nbytes());
  copies_[ticket] = std::move(copy);
  return absl::OkStatus();
}

absl::Status HostSwap::load(uint64_t ticket, const Tensor& into) {
  const Tensor& copy = copies_.at(ticket);
  MEMTRAIN_CHECK(copy.nbytes() == into.nbytes());
  std::memcpy(into.raw(), copy.raw(), into.nbytes());
  return absl::OkStatus();
}

}  // namespace memtrain::offload
