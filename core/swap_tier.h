// SwapTier: somewhere outside activation memory where an activation store parks saved tensors (pinned host
// buffers, an SSD file; the implementations live in offload/). Writes and reads run asynchronously on the tier's
// own thread, so they overlap compute; the store decides when to wait, which keeps the memory it holds independent
// of how fast the tier is. Calls come from one training thread; tickets from any store sharing the tier.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tensor.h"

namespace memtrain {

class SwapTier {
 public:
  virtual ~SwapTier() = default;
  virtual absl::string_view name() const = 0;  // "swap_host", "swap_ssd"

  // Starts writing `t` out; the tier keeps a reference to `t` until the write is done. Returns its ticket.
  virtual absl::StatusOr<uint64_t> write(const Tensor& t) = 0;
  // Starts reading ticket's bytes back into `into` (same size, caller-allocated), after its write.
  virtual absl::Status read(uint64_t ticket, const Tensor& into) = 0;
  // Waits until the ticket's last write or read is done; its error (a failed or short write, a full disk) if any.
  virtual absl::Status wait(uint64_t ticket) = 0;
  // Frees the ticket's space (after waiting for what is in flight).
  virtual void release(uint64_t ticket) = 0;
  // Bytes moved so far, for benchmarks.
  virtual int64_t bytes_written() const = 0;
  virtual int64_t bytes_read() const = 0;
};

}  // namespace memtrain
