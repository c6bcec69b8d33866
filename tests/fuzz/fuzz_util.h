// Helpers shared by the fuzz targets: the parsers under test read files, so each input is written to one scratch
// file per process (<scratch dir>/memtrain_fuzz_<kind>_<pid>.bin, removed at exit) before the parser opens it.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace memtrain::fuzz {

// Aborts with a message; libFuzzer reports it as a crash and saves the input.
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
  std::abort();
}

// Every scratch path handed out so far (never freed: still reachable at exit, so LeakSanitizer stays quiet).
inline std::vector<std::string>& scratch_paths() {
  static auto* paths = new std::vector<std::string>;
  return *paths;
}
inline void unlink_scratch_files() {
  for (const std::string& p : scratch_paths()) ::unlink(p.c_str());
}

// $MEMTRAIN_FUZZ_TMPDIR, else /dev/shm when writable, else /tmp. A disk-backed /tmp is slow here: ext4 flushes a
// file that is truncated and rewritten on close (auto_da_alloc), which cut the shard target to ~300 runs/s.
inline std::string scratch_dir() {
  if (const char* env = std::getenv("MEMTRAIN_FUZZ_TMPDIR"); env != nullptr && *env != '\0') return env;
  if (::access("/dev/shm", W_OK) == 0) return "/dev/shm";
  return "/tmp";
}

// The scratch path for `kind` in this process; unlinked when the process exits normally.
inline std::string scratch_path(const char* kind) {
  static const std::string dir = scratch_dir();
  std::string path = dir + "/memtrain_fuzz_" + kind + "_" + std::to_string(::getpid()) + ".bin";
  std::vector<std::string>& made = scratch_paths();
  if (std::find(made.begin(), made.end(), path) == made.end()) {
    if (made.empty()) std::atexit(unlink_scratch_files);
    made.push_back(path);
  }
  return path;
}

// Replaces the scratch file's contents with data[0, size).
inline void write_scratch(const std::string& path, const uint8_t* data, size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) fail("cannot create the scratch file");
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) fail("cannot write the scratch file");
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

}  // namespace memtrain::fuzz
