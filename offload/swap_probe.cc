#include "offload/swap_probe.h"

#include <chrono>
#include <cstring>
#include <vector>

#include "core/status.h"

namespace memtrain::offload {

absl::StatusOr<SwapRates> measure_swap_rates(SwapTier& tier, int64_t tensor_bytes, int count, MemCategory category,
                                             void (*sync)(SwapTier&)) {
  std::vector<Tensor> tensors;
  for (int i = 0; i < count; ++i) {
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor t, Tensor::empty({tensor_bytes}, DType::kU8, category));
    std::memset(t.raw(), 0x3c + i, tensor_bytes);
    tensors.push_back(std::move(t));
  }
  auto since = [](std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  std::vector<uint64_t> tickets;
  auto t0 = std::chrono::steady_clock::now();
  for (const Tensor& t : tensors) {
    MEMTRAIN_ASSIGN_OR_RETURN(const uint64_t k, tier.write(t));
    tickets.push_back(k);
  }
  for (uint64_t k : tickets) MEMTRAIN_RETURN_IF_ERROR(tier.wait(k));
  if (sync != nullptr) sync(tier);
  SwapRates rates;
  const double bytes = static_cast<double>(tensor_bytes) * count;
  rates.write = bytes / since(t0);
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < count; ++i) MEMTRAIN_RETURN_IF_ERROR(tier.read(tickets[i], tensors[i]));
  for (uint64_t k : tickets) MEMTRAIN_RETURN_IF_ERROR(tier.wait(k));
  rates.read = bytes / since(t0);
  for (uint64_t k : tickets) tier.release(k);
  return rates;
}

}  // namespace memtrain::offload
