// SsdSwap (memory.activations = swap_ssd): saved tensors written to one file per rank under offload.ssd_path with
// io_uring, O_DIRECT and two registered 4 KiB-aligned staging buffers (a chunk is copied into one while the other
// is on its way to or from the disk). The file is created 0600 and unlinked as soon as it is open, so it is gone
// however the process ends (normal exit, SIGTERM, even SIGKILL); its space shows in df until then. Space in the
// file is handed out first-fit from a free list, in multiples of 4 KiB.
//
// Where O_DIRECT is refused (some file systems) the file is written through the page cache and direct() says so;
// where io_uring is unavailable (a seccomp filter) plain pread/pwrite on the tier's thread do the same work.
#pragma once

#include <liburing.h>

#include <map>
#include <memory>
#include <string>

#include "offload/async_swap.h"

namespace memtrain::offload {

class SsdSwap final : public AsyncSwap {
 public:
  // Creates the file in `dir` (named after `tag`, e.g. the rank) and probes a write. Errors name the directory
  // and say why: missing, not a directory, not writable, full.
  static absl::StatusOr<std::unique_ptr<SsdSwap>> create(const std::string& dir, const std::string& tag);
  ~SsdSwap() override;
  absl::string_view name() const override { return "swap_ssd"; }

  bool direct() const { return direct_; }        // O_DIRECT in effect
  bool uses_io_uring() const { return uring_; }  // else pread/pwrite
  const std::string& path() const { return path_; }
  int fd() const { return fd_; }
  int64_t file_bytes() const { return file_end_; }  // the file's high-water mark
  static constexpr int64_t kChunk = 4 << 20;   // staging buffer size
  static constexpr int64_t kAlign = 4096;
  static constexpr int64_t kStagingBytes = 2 * kChunk + kAlign;  // category swap, for as long as the tier lives

 private:
  SsdSwap() = default;
  absl::Status store(uint64_t ticket, const Tensor& t) override;
  absl::Status load(uint64_t ticket, const Tensor& into) override;
  void free(uint64_t ticket) override;

  int64_t allocate(int64_t bytes);
  // Chunk i of a transfer: staging buffer i % 2, `len` bytes at file offset `at`.
  absl::Status submit(bool write, int64_t i, int64_t len, int64_t at);
  absl::Status complete(int64_t i);  // waits for chunk i; its error if it failed or came up short
  void drain();                      // waits for everything submitted (after an error)
  absl::Status io_error(const char* action, int64_t res) const;

  std::string path_;
  int fd_ = -1;
  bool direct_ = false;
  bool uring_ = false;
  io_uring ring_{};
  Tensor staging_;      // category swap: 2 chunks plus alignment slack
  char* buffers_[2]{};  // 4 KiB-aligned, registered with the ring
  std::map<int64_t, int64_t> results_;  // chunk -> bytes done or -errno, completed but not yet claimed
  struct Op {
    int64_t len, at;
    char* buf;
  };
  std::map<int64_t, Op> expected_;      // chunk -> what was submitted
  std::map<uint64_t, std::pair<int64_t, int64_t>> extents_;  // ticket -> (offset, bytes)
  std::map<int64_t, int64_t> free_;     // offset -> bytes
  int64_t file_end_ = 0;
  bool writing_ = false;  // the transfer in progress, for error messages
};

}  // namespace memtrain::offload
