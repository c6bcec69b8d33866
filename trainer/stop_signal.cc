#include "trainer/stop_signal.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "core/status.h"

namespace memtrain::trainer {
namespace {
// A signal handler can reach nothing but globals: these two are the process's only signal state.
std::atomic<int> g_signal{0};  // the first stop signal received
std::atomic<int> g_count{0};   // how many were received

void write_stderr(const char* text) {
  const ssize_t ignored = ::write(STDERR_FILENO, text, std::strlen(text));  // async-signal-safe, unlike stdio
  (void)ignored;
}

void on_stop_signal(int signo) {
  if (g_count.fetch_add(1) > 0) {
    write_stderr("memtrain: second stop signal: exiting now (the newest complete checkpoint is kept)\n");
    ::_exit(128 + signo);
  }
  g_signal.store(signo);
}
}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
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
  g_count.store(0);
}

}  // namespace memtrain::trainer
