#include "core/paged_buffer.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace memtrain {

absl::StatusOr<std::shared_ptr<PagedBuffer>> PagedBuffer::create(int64_t bytes, MemCategory category,
                                                                 std::string what) {
  const int64_t size = round_up(std::max<int64_t>(bytes, 1));
  // MAP_NORESERVE: addresses only; memory is counted (and budgeted) by commit.
  void* p = mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("reserving ", format_bytes(size), " of addresses for ", what, ": ", std::strerror(errno)));
  }
  return std::shared_ptr<PagedBuffer>(new PagedBuffer(static_cast<char*>(p), size, category, std::move(what)));
}

PagedBuffer::~PagedBuffer() {
  if (committed_pages_ > 0) MemoryTracker::host().discharge(committed_pages_ * kPage, category_);
  munmap(data_, static_cast<size_t>(bytes_));
}

void PagedBuffer::check_range(int64_t offset, int64_t bytes) const {
  MEMTRAIN_CHECK_MSG(offset % kPage == 0 && bytes % kPage == 0 && offset >= 0 && offset + bytes <= bytes_,
                     absl::StrCat("paged buffer range [", offset, ", ", offset + bytes, ") of ", bytes_));
}

absl::Status PagedBuffer::commit(int64_t offset, int64_t bytes) {
  check_range(offset, bytes);
  for (int64_t p = offset / kPage; p < (offset + bytes) / kPage; ++p) MEMTRAIN_CHECK(!committed_[p]);
  MEMTRAIN_RETURN_IF_ERROR(MemoryTracker::host().charge(bytes, category_, what_));
  for (int64_t p = offset / kPage; p < (offset + bytes) / kPage; ++p) committed_[p] = true;
  committed_pages_ += bytes / kPage;
  return absl::OkStatus();
}

void PagedBuffer::decommit(int64_t offset, int64_t bytes) {
  check_range(offset, bytes);
  if (bytes == 0) return;
  for (int64_t p = offset / kPage; p < (offset + bytes) / kPage; ++p) {
    MEMTRAIN_CHECK(committed_[p]);
    committed_[p] = false;
  }
  // On a private anonymous mapping the pages go back to the OS and read as zeros when touched again.
  MEMTRAIN_CHECK(madvise(data_ + offset, static_cast<size_t>(bytes), MADV_DONTNEED) == 0);
  committed_pages_ -= bytes / kPage;
  MemoryTracker::host().discharge(bytes, category_);
}

Tensor PagedBuffer::view(int64_t offset, Shape shape, DType dtype) {
  MEMTRAIN_CHECK(offset >= 0 && offset + shape_numel(shape) * static_cast<int64_t>(dtype_size(dtype)) <= bytes_);
  return Tensor::borrowed(data_ + offset, std::move(shape), dtype, category_, shared_from_this());
}

}  // namespace memtrain
