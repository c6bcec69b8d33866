#include "checkpoint/shm_segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::checkpoint {
namespace {

absl::Status check_name(const std::string& name) {
  const bool ok = !name.empty() && name.size() < 200 && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
  return ok ? absl::OkStatus() : absl::InvalidArgumentError(absl::StrCat("bad shared-memory name '", name, "'"));
}

absl::Status errno_status(const std::string& what, const std::string& name) {
  const int e = errno;
  const std::string msg = absl::StrCat(what, " /dev/shm/", name, ": ", std::strerror(e));
  if (e == EEXIST) return absl::AlreadyExistsError(msg);
  if (e == ENOENT) return absl::NotFoundError(msg);
  if (e == ENOSPC || e == ENOMEM) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

}  // namespace

absl::StatusOr<ShmSegment> ShmSegment::map(const std::string& name, int fd, int64_t bytes) {
  ShmSegment s;
  s.name_ = name;
  s.bytes_ = bytes;
  if (bytes > 0) {
    void* p = mmap(nullptr, static_cast<size_t>(bytes), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const absl::Status st = errno_status("mapping", name);
      ::close(fd);
      return st;
    }
    s.data_ = static_cast<char*>(p);
  }
  ::close(fd);  // the mapping keeps the object
  return s;
}

absl::StatusOr<ShmSegment> ShmSegment::create(const std::string& name, int64_t bytes) {
  MEMTRAIN_RETURN_IF_ERROR(check_name(name));
  const int fd = shm_open(("/" + name).c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) return errno_status("creating", name);
  // posix_fallocate, not ftruncate: the pages are reserved now, so a full /dev/shm fails here and not with SIGBUS
  // at the first write.
  const int err = bytes > 0 ? posix_fallocate(fd, 0, bytes) : 0;
  if (err != 0) {
    errno = err;
    const absl::Status st = errno_status(absl::StrCat("reserving ", bytes, " bytes for"), name);
    ::close(fd);
    shm_unlink(("/" + name).c_str());
    return st;
  }
  return map(name, fd, bytes);
}

absl::StatusOr<ShmSegment> ShmSegment::open(const std::string& name) {
  MEMTRAIN_RETURN_IF_ERROR(check_name(name));
  const int fd = shm_open(("/" + name).c_str(), O_RDWR, 0600);
  if (fd < 0) return errno_status("opening", name);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const absl::Status s = errno_status("reading the size of", name);
    ::close(fd);
    return s;
  }
  return map(name, fd, static_cast<int64_t>(st.st_size));
}

absl::Status ShmSegment::unlink(const std::string& name) {
  MEMTRAIN_RETURN_IF_ERROR(check_name(name));
  if (shm_unlink(("/" + name).c_str()) != 0) return errno_status("removing", name);
  return absl::OkStatus();
}

std::vector<std::string> ShmSegment::list(const std::string& prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string n = e.path().filename().string();
    if (absl::StartsWith(n, prefix)) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<ShmSegment> DevShmObjects::get(const std::string& name, int64_t bytes) {
  auto s = ShmSegment::open(name);
  if (s.ok() && s->bytes() == bytes) return s;
  if (s.ok()) MEMTRAIN_RETURN_IF_ERROR(ShmSegment::unlink(name));
  if (!s.ok() && s.status().code() != absl::StatusCode::kNotFound) return s.status();
  return ShmSegment::create(name, bytes);
}

ShmSegment& ShmSegment::operator=(ShmSegment&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) munmap(data_, static_cast<size_t>(bytes_));
    name_ = std::move(o.name_);
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

ShmSegment::~ShmSegment() {
  if (data_ != nullptr) munmap(data_, static_cast<size_t>(bytes_));
}

}  // namespace memtrain::checkpoint
