// PagedBuffer: a range of addresses that stays put while the memory behind it comes and goes, page by page. Ranges
// are committed (counted in the memory tracker under the buffer's category and budget, backed by the OS on first
// touch) and decommitted (the pages handed back with MADV_DONTNEED, the count lowered; their contents are lost and
// read as zeros). Pointers into the buffer therefore stay valid for its whole life, which lets ZeRO-3's value shard
// go out to a swap tier between uses while the optimizer and the checkpoints keep their pointers to it
// (offload.parameters). The CUDA backend will do the same with reserved virtual addresses and mapped pages.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/memory.h"
#include "core/tensor.h"

namespace memtrain {

class PagedBuffer : public std::enable_shared_from_this<PagedBuffer> {
 public:
  static constexpr int64_t kPage = 4096;
  static int64_t round_up(int64_t bytes) { return (bytes + kPage - 1) / kPage * kPage; }

  // `bytes` of addresses (rounded up to pages), nothing committed.
  static absl::StatusOr<std::shared_ptr<PagedBuffer>> create(int64_t bytes, MemCategory category, std::string what);
  ~PagedBuffer();
  PagedBuffer(const PagedBuffer&) = delete;
  PagedBuffer& operator=(const PagedBuffer&) = delete;

  char* data() const { return data_; }
  int64_t bytes() const { return bytes_; }
  int64_t committed_bytes() const { return committed_pages_ * kPage; }
  // Page-aligned [offset, offset + bytes). Committing a committed page or decommitting a free one is a bug (CHECK).
  // commit fails (ResourceExhausted) when the budget has no room; the pages then stay free.
  absl::Status commit(int64_t offset, int64_t bytes);
  void decommit(int64_t offset, int64_t bytes);
  bool is_committed(int64_t offset) const { return committed_[offset / kPage]; }
  // A tensor over [offset, offset + numel * size) that keeps this buffer alive.
  Tensor view(int64_t offset, Shape shape, DType dtype);

 private:
  PagedBuffer(char* data, int64_t bytes, MemCategory category, std::string what)
      : data_(data), bytes_(bytes), category_(category), what_(std::move(what)), committed_(bytes / kPage, false) {}
  void check_range(int64_t offset, int64_t bytes) const;

  char* data_;
  int64_t bytes_;
  MemCategory category_;
  std::string what_;
  std::vector<bool> committed_;  // per page
  int64_t committed_pages_ = 0;
};

}  // namespace memtrain
