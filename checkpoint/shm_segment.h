// ShmSegment: a shared-memory object mapped into this process: a named POSIX object (/dev/shm/<name>, created
// 0600), or one a snapshot keeper handed over (checkpoint/shm_keeper.h). Its bytes outlive the process that wrote
// them (until the name is unlinked, or the keeper lets go), which is what lets an in-memory snapshot survive a
// crash or kill -9 of the trainer.
//
// ObjectSource: where a job's objects come from, so the snapshot store is the same over both.
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
  // Maps `bytes` of the shared-memory file `fd` (taking the descriptor: closed here, the mapping keeps the object).
  static absl::StatusOr<ShmSegment> map(const std::string& name, int fd, int64_t bytes);

  ShmSegment() = default;  // none: no name, no bytes
  ShmSegment(ShmSegment&& o) noexcept { *this = std::move(o); }
  ShmSegment& operator=(ShmSegment&& o) noexcept;
  ~ShmSegment();

  const std::string& name() const { return name_; }
  char* data() const { return data_; }
  int64_t bytes() const { return bytes_; }

 private:
  std::string name_;
  char* data_ = nullptr;
  int64_t bytes_ = 0;
};

class ObjectSource {
 public:
  virtual ~ObjectSource() = default;
  // The object `name` of `bytes` bytes: the existing one when it has that size, else a new one of zeros (one of
  // another size is replaced).
  virtual absl::StatusOr<ShmSegment> get(const std::string& name, int64_t bytes) = 0;
  // The existing object, whatever its size; NotFound if there is none.
  virtual absl::StatusOr<ShmSegment> open(const std::string& name) = 0;
  // Lets go of the object (mappings stay valid); no error when there is none.
  virtual void drop(const std::string& name) = 0;
};

// Named POSIX objects in /dev/shm: they stay until dropped (or the machine restarts).
class DevShmObjects : public ObjectSource {
 public:
  absl::StatusOr<ShmSegment> get(const std::string& name, int64_t bytes) override;
  absl::StatusOr<ShmSegment> open(const std::string& name) override { return ShmSegment::open(name); }
  void drop(const std::string& name) override { ShmSegment::unlink(name).IgnoreError(); }
};

}  // namespace memtrain::checkpoint
