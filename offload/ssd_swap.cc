#include "offload/ssd_swap.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/file_io.h"
#include "core/status.h"

namespace memtrain::offload {

namespace {
int64_t round_up(int64_t n, int64_t a) { return (n + a - 1) / a * a; }
}  // namespace

absl::StatusOr<std::unique_ptr<SsdSwap>> SsdSwap::create(const std::string& dir, const std::string& tag) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return errno_error(dir, "cannot use as the swap directory", errno);
  if (!S_ISDIR(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat(dir, ": is not a directory"));
  std::unique_ptr<SsdSwap> tier(new SsdSwap());
  tier->path_ = absl::StrCat(dir, "/memtrain-swap-", tag, "-", ::getpid(), ".bin");
  MEMTRAIN_ASSIGN_OR_RETURN(tier->staging_, Tensor::empty({kStagingBytes}, DType::kU8, MemCategory::kSwap));
  char* base = static_cast<char*>(tier->staging_.raw());
  base += (kAlign - reinterpret_cast<uintptr_t>(base) % kAlign) % kAlign;
  tier->buffers_[0] = base;
  tier->buffers_[1] = base + kChunk;

  // O_DIRECT first; a file system that refuses it (at open or at the first write) gets the page cache.
  for (bool direct : {true, false}) {
    const int flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | (direct ? O_DIRECT : 0);
    const int fd = ::open(tier->path_.c_str(), flags, 0600);
    if (fd < 0) {
      if (direct && errno == EINVAL) continue;
      return errno_error(dir, "cannot create the swap file", errno);
    }
    ::unlink(tier->path_.c_str());  // gone however the process ends; the open descriptor keeps it alive
    ::fchmod(fd, 0600);             // whatever the umask
    std::memset(tier->buffers_[0], 0, kAlign);
    const ssize_t n = ::pwrite(fd, tier->buffers_[0], kAlign, 0);
    if (n == kAlign) {
      tier->fd_ = fd;
      tier->direct_ = direct;
      break;
    }
    const int err = n < 0 ? errno : ENOSPC;
    ::close(fd);
    if (!(direct && err == EINVAL)) return errno_error(dir, "cannot write the swap file", err);
  }
  MEMTRAIN_CHECK(tier->fd_ >= 0);
  if (::io_uring_queue_init(8, &tier->ring_, 0) == 0) {
    iovec iov[2] = {{tier->buffers_[0], static_cast<size_t>(kChunk)}, {tier->buffers_[1], static_cast<size_t>(kChunk)}};
    if (::io_uring_register_buffers(&tier->ring_, iov, 2) == 0) {
      tier->uring_ = true;
    } else {
      ::io_uring_queue_exit(&tier->ring_);
    }
  }
  tier->start();
  return tier;
}

SsdSwap::~SsdSwap() {
  stop();
  if (uring_) ::io_uring_queue_exit(&ring_);
  if (fd_ >= 0) ::close(fd_);
}

absl::Status SsdSwap::io_error(const char* action, int64_t res) const {
  if (res < 0) return errno_error(path_, action, static_cast<int>(-res));
  return absl::ResourceExhaustedError(absl::StrCat(path_, ": ", action, ": short transfer (", res,
                                                   " bytes); is the disk full?"));
}

absl::Status SsdSwap::submit(bool write, int64_t i, int64_t len, int64_t at) {
  char* buf = buffers_[i % 2];
  expected_[i] = {len, at, buf};
  if (!uring_) {
    const ssize_t n = write ? ::pwrite(fd_, buf, len, at) : ::pread(fd_, buf, len, at);
    results_[i] = n < 0 ? -errno : n;
    return absl::OkStatus();
  }
  io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
  MEMTRAIN_CHECK_MSG(sqe != nullptr, "swap ring full");  // at most 2 in flight on a ring of 8
  if (write) {
    ::io_uring_prep_write_fixed(sqe, fd_, buf, static_cast<unsigned>(len), static_cast<uint64_t>(at), i % 2);
  } else {
    ::io_uring_prep_read_fixed(sqe, fd_, buf, static_cast<unsigned>(len), static_cast<uint64_t>(at), i % 2);
  }
  ::io_uring_sqe_set_data(sqe, reinterpret_cast<void*>(static_cast<uintptr_t>(i)));
  const int r = ::io_uring_submit(&ring_);
  if (r < 0) return errno_error(path_, "io_uring_submit", -r);
  return absl::OkStatus();
}

absl::Status SsdSwap::complete(int64_t i) {
  while (results_.find(i) == results_.end()) {
    io_uring_cqe* cqe = nullptr;
    const int r = ::io_uring_wait_cqe(&ring_, &cqe);
    if (r < 0) return errno_error(path_, "io_uring_wait_cqe", -r);
    results_[static_cast<int64_t>(reinterpret_cast<uintptr_t>(::io_uring_cqe_get_data(cqe)))] = cqe->res;
    ::io_uring_cqe_seen(&ring_, cqe);
  }
  int64_t res = results_[i];
  const Op op = expected_[i];
  results_.erase(i);
  expected_.erase(i);
  if (res >= 0 && res < op.len && writing_) {
    // A short write (the disk filled up mid-chunk): writing the rest tells why.
    const ssize_t more = ::pwrite(fd_, op.buf + res, op.len - res, op.at + res);
    res = more < 0 ? -errno : res + more;
  }
  if (res != op.len) return io_error(writing_ ? "write" : "read", res);
  return absl::OkStatus();
}

void SsdSwap::drain() {
  while (!expected_.empty()) complete(expected_.begin()->first).IgnoreError();
}

int64_t SsdSwap::allocate(int64_t bytes) {
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < bytes) continue;
    const int64_t at = it->first, left = it->second - bytes;
    free_.erase(it);
    if (left > 0) free_[at + bytes] = left;
    return at;
  }
  const int64_t at = file_end_;
  file_end_ += bytes;
  return at;
}

void SsdSwap::free(uint64_t ticket) {
  auto e = extents_.find(ticket);
  if (e == extents_.end()) return;  // its write failed before space was given
  auto [at, bytes] = e->second;
  extents_.erase(e);
  auto next = free_.lower_bound(at);
  if (next != free_.end() && next->first == at + bytes) {  // merge with the extent after
    bytes += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {  // and with the one before
    auto prev = std::prev(next);
    if (prev->first + prev->second == at) {
      prev->second += bytes;
      return;
    }
  }
  free_[at] = bytes;
}

absl::Status SsdSwap::store(uint64_t ticket, const Tensor& t) {
  const int64_t bytes = static_cast<int64_t>(t.nbytes()), padded = round_up(std::max<int64_t>(bytes, 1), kAlign);
  const int64_t at = allocate(padded);
  extents_[ticket] = {at, padded};
  writing_ = true;
  const char* src = static_cast<const char*>(t.raw());
  const int64_t chunks = (padded + kChunk - 1) / kChunk;
  absl::Status status;
  for (int64_t i = 0; i < chunks && status.ok(); ++i) {
    if (i >= 2) status = complete(i - 2);  // its buffer is free again
    if (!status.ok()) break;
    const int64_t pos = i * kChunk, len = std::min(kChunk, padded - pos);
    const int64_t data = std::clamp<int64_t>(bytes - pos, 0, len);
    std::memcpy(buffers_[i % 2], src + pos, data);
    std::memset(buffers_[i % 2] + data, 0, len - data);
    status = submit(/*write=*/true, i, len, at + pos);
  }
  for (int64_t i = std::max<int64_t>(0, chunks - 2); i < chunks && status.ok(); ++i) status = complete(i);
  if (!status.ok()) drain();
  return status;
}

absl::Status SsdSwap::load(uint64_t ticket, const Tensor& into) {
  const int64_t at = extents_.at(ticket).first, padded = extents_.at(ticket).second;
  const int64_t bytes = static_cast<int64_t>(into.nbytes());
  MEMTRAIN_CHECK(round_up(std::max<int64_t>(bytes, 1), kAlign) == padded);
  char* dst = static_cast<char*>(into.raw());
  writing_ = false;
  const int64_t chunks = (padded + kChunk - 1) / kChunk;
  auto len_of = [&](int64_t i) { return std::min(kChunk, padded - i * kChunk); };
  absl::Status status;
  for (int64_t i = 0; i < std::min<int64_t>(chunks, 2) && status.ok(); ++i)
    status = submit(/*write=*/false, i, len_of(i), at + i * kChunk);
  for (int64_t i = 0; i < chunks && status.ok(); ++i) {
    status = complete(i);
    if (!status.ok()) break;
    const int64_t pos = i * kChunk;
    std::memcpy(dst + pos, buffers_[i % 2], std::clamp<int64_t>(bytes - pos, 0, len_of(i)));
    if (i + 2 < chunks) status = submit(/*write=*/false, i + 2, len_of(i + 2), at + (i + 2) * kChunk);
  }
  if (!status.ok()) drain();
  return status;
}

}  // namespace memtrain::offload
