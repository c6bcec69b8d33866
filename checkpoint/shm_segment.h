// ShmSegment: a named POSIX shared-memory object mapped into this process (/dev/shm/<name>), created 0600. Its
// bytes outlive the process that wrote them until someone unlinks the name, which is what lets an in-memory
// snapshot survive a crash or kill -9 of the trainer (the per-node keeper unlinks a job's segments when it ends).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace memtrain::checkpoint {

class ShmSegment {
 public:
  // A new object of `bytes` (zeros); AlreadyExists if the name is taken. Names: [A-Za-z0-9._-]+, no slash.
  static absl::StatusOr<ShmSegment> create(const std::string& name, int64_t bytes);
  // An existing object, read-write; NotFound if there is none.
  static absl::StatusOr<ShmSegment> open(const std::string& name);
  // Removes the name (the mapping of anyone who has it stays valid). NotFound if absent.
  static absl::Status unlink(const std::string& name);
  // The names of existing objects that start with `prefix`, sorted.
  static std::vector<std::string> list(const std::string& prefix);

  ShmSegment() = default;  // none: no name, no bytes
  ShmSegment(ShmSegment&& o) noexcept { *this = std::move(o); }
  ShmSegment& operator=(ShmSegment&& o) noexcept;
  ~ShmSegment();

  const std::string& name() const { return name_; }
  char* data() const { return data_; }
  int64_t bytes() const { return bytes_; }

 private:
  static absl::StatusOr<ShmSegment> map(const std::string& name, int fd, int64_t bytes);
  std::string name_;
  char* data_ = nullptr;
  int64_t bytes_ = 0;
};

}  // namespace memtrain::checkpoint
