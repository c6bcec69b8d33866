// Named fault points for crash tests: MEMTRAIN_FAULT_POINT("file_io.after_write") kills the process with SIGKILL
// the N-th time the point is reached when the environment says MEMTRAIN_FAULT="file_io.after_write:N".
//
// MEMTRAIN_FAULT (read once, at the first fault point any thread reaches):
//   unset or empty  every point is a single predicted branch on a cached flag
//   "NAME:N"        the N-th (1-based) time NAME is reached, print "fault injection: SIGKILL at NAME (hit N)" to
//                   stderr and raise(SIGKILL), which no handler can catch: the closest a test gets to a power cut
//                   or an OOM kill without one
//   "list"          print "fault point: NAME" to stderr the first time each point is reached
//   "count"         print "fault point: NAME #K" to stderr every time a point is reached (K counts from 1), so a
//                   harness learns how many times a run passes each point and can pick (NAME, K) kill targets
// Any other value is a usage error: the process prints why and exits with status 2 at the first point.
// tests/integration/fault_injection_test.cc kills a training job at randomly chosen points this way.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

namespace memtrain::fault {

// "NAME:N", "list" or "count", parsed; nullopt for anything else (an empty name, N < 1, junk after N).
struct Spec {
  enum class Mode { kKill, kList, kCount };
  Mode mode = Mode::kKill;
  std::string name;   // kKill only
  int64_t hit = 0;    // kKill only: 1-based
};
std::optional<Spec> parse_spec(const std::string& value);

namespace internal {
enum : uint8_t { kUnread = 0, kOff = 1, kOn = 2 };
// kUnread until the first fault point reads MEMTRAIN_FAULT, then kOff or kOn for the rest of the process.
extern std::atomic<uint8_t> g_state;
// The slow path: reads the environment on first use, counts the hit, prints or kills.
void reached(const char* name);
}  // namespace internal

}  // namespace memtrain::fault

// A statement; `name` must be a string literal (or live for the whole process). Lock-free and cheap when unset.
#define MEMTRAIN_FAULT_POINT(name)                                                                           \
  do {                                                                                                       \
    if (__builtin_expect(::memtrain::fault::internal::g_state.load(std::memory_order_relaxed) !=             \
                             ::memtrain::fault::internal::kOff,                                              \
                         0)) {                                                                               \
      ::memtrain::fault::internal::reached(name);                                                            \
    }                                                                                                        \
  } while (0)
