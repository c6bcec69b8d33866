#include "trainer/stop_signal.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <cstring>

#include "core/status.h"

namespace memtrain::trainer {
namespace {
// A signal handler can reach nothing but globals: these two are the process's only signal state.
std::atomic<int> g_signal{0};         // the first stop signal received
std::atomic<int64_t> g_first_ms{-1};  // when (CLOCK_MONOTONIC), -1 before it

void write_stderr(const char* text) {
  const ssize_t ignored = ::write(STDERR_FILENO, text, std::strlen(text));  // async-signal-safe, unlike stdio
  (void)ignored;
}

int64_t now_ms() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);  // async-signal-safe
  return static_cast<int64_t>(t.tv_sec) * 1000 + t.tv_nsec / 1000000;
}

// Runs with both signals blocked (sa_mask), so never inside itself.
void on_stop_signal(int signo) {
  const int64_t now = now_ms(), first = g_first_ms.load();
  if (first < 0) {
    g_signal.store(signo);
    g_first_ms.store(now);
    return;
  }
  // One request often arrives twice: Slurm signals the ranks and srun forwards the same signal to them.
  if (now - first < kRepeatWindowMs) return;
  write_stderr("memtrain: second stop signal: exiting now (the newest complete checkpoint is kept)\n");
  ::_exit(128 + signo);
}
}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaddset(&action.sa_mask, SIGTERM);
  sigaddset(&action.sa_mask, SIGUSR1);
  action.sa_flags = SA_RESTART;  // system calls in flight (reads, MPI's polls) go on
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR1, &action, nullptr);
}

int stop_signal() { return g_signal.load(); }

absl::StatusOr<int> agreed_stop_signal(parallel::Communicator& world) {
  int mine = stop_signal(), any = mine;
  if (world.size() > 1) MEMTRAIN_RETURN_IF_ERROR(world.all_reduce(&mine, &any, 1, DType::kI32, parallel::ReduceOp::kMax));
  return any;
}

void clear_stop_signal() {
  g_signal.store(0);
  g_first_ms.store(-1);
}

}  // namespace memtrain::trainer
