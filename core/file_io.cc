// POSIX file I/O for data/: read_file and write_file_atomically (tmp + fsync + rename + directory fsync).
#include "core/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/fault_injection.h"

namespace memtrain {
namespace {

// Closes on scope exit so every early return releases the descriptor.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status write_all(int fd, const std::string& path, absl::string_view bytes) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(path, "cannot write", errno);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status write_and_sync(const std::string& tmp, absl::Span<const absl::string_view> pieces) {
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) return errno_error(tmp, "cannot create", errno);
  MEMTRAIN_FAULT_POINT("file_io.after_open_tmp");
  for (absl::string_view piece : pieces) {
    absl::Status st = write_all(fd.get(), tmp, piece);
    if (!st.ok()) return st;
  }
  MEMTRAIN_FAULT_POINT("file_io.after_write");
  // Without fsync before rename, a crash can leave the new name pointing at an empty or partial file.
  if (::fsync(fd.get()) != 0) return errno_error(tmp, "cannot fsync", errno);
  MEMTRAIN_FAULT_POINT("file_io.after_fsync");
  // close() can report a delayed write error (NFS); a file we cannot vouch for must not be renamed into place.
  if (::close(fd.release()) != 0) return errno_error(tmp, "cannot close", errno);
  return absl::OkStatus();
}

}  // namespace

absl::Status errno_error(absl::string_view path, absl::string_view action, int err) {
  const std::string msg = absl::StrCat(path, ": ", action, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(msg);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(msg);
    case EISDIR:
    case ENOTDIR:
      return absl::InvalidArgumentError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::StatusOr<std::string> read_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return errno_error(path, "cannot open", errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return errno_error(path, "cannot stat", errno);
  if (!S_ISREG(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    const ssize_t n = ::read(fd.get(), data.data() + got, data.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(path, "cannot read", errno);
    }
    if (n == 0) break;  // the file shrank while we read it; keep what is there
    got += static_cast<size_t>(n);
  }
  data.resize(got);
  return data;
}

namespace {
// After a rename into `path`: fsyncs its directory (the rename lives in the directory entry; without the fsync a
// crash can forget it).
absl::Status sync_directory_of(const std::string& path) {
  MEMTRAIN_FAULT_POINT("file_io.after_rename");
  const std::string dir = parent_dir(path);
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() < 0) return errno_error(dir, "cannot open directory to fsync", errno);
  if (::fsync(dfd.get()) != 0) return errno_error(dir, "cannot fsync directory", errno);
  MEMTRAIN_FAULT_POINT("file_io.after_dir_fsync");
  return absl::OkStatus();
}
}  // namespace

absl::Status write_file_atomically(const std::string& path, absl::Span<const absl::string_view> pieces) {
  const std::string tmp = path + ".tmp";
  // If tmp already exists as something we must not delete (a directory), open() fails and we leave it alone.
  struct stat before;
  const bool tmp_existed = ::lstat(tmp.c_str(), &before) == 0;
  absl::Status st = write_and_sync(tmp, pieces);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    st = errno_error(path, absl::StrCat("cannot rename ", tmp, " to it"), errno);
  }
  if (!st.ok()) {
    if (!tmp_existed || S_ISREG(before.st_mode)) ::unlink(tmp.c_str());
    return st;
  }
  return sync_directory_of(path);
}

absl::Status commit_file(const std::string& tmp, const std::string& path) {
  {
    Fd fd(::open(tmp.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return errno_error(tmp, "cannot open to fsync", errno);
    if (::fsync(fd.get()) != 0) return errno_error(tmp, "cannot fsync", errno);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return errno_error(path, absl::StrCat("cannot rename ", tmp, " to it"), errno);
  return sync_directory_of(path);
}

absl::Status append_whole(int fd, const std::string& path, absl::string_view data, int64_t* end) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    const int err = n < 0 ? errno : ENOSPC;  // write() returning 0 for a non-empty buffer: no room was made
    absl::Status st = errno_error(path, "cannot write", err);
    // Shrinking a file needs no free space; if it fails anyway the message says the last record may be torn.
    if (done > 0 && (::ftruncate(fd, *end) != 0 || ::lseek(fd, *end, SEEK_SET) != *end)) {
      return absl::Status(st.code(), absl::StrCat(st.message(), " (and cannot remove the partial last record: ",
                                                  std::strerror(errno), ")"));
    }
    return st;
  }
  *end += static_cast<int64_t>(data.size());
  return absl::OkStatus();
}

}  // namespace memtrain
