// Graceful stop on SIGTERM and SIGUSR1, the signals clusters send before they preempt a job or end it at its time
// limit (Slurm: --signal=USR1@120, then SIGTERM). The first one asks the training loop to stop at its next step
// boundary: every rank agrees on it, a checkpoint of that step is saved (an asynchronous save in flight is waited
// for), and `memtrain train` exits with kExitStopped, which the launch scripts read as "requeue me". A second signal,
// kRepeatWindowMs or more after the first (sooner it is the same request relayed twice, as Slurm and srun both
// signal the ranks), ends the process at once with 128 + its number; that corrupts nothing, since every checkpoint
// is written under a temporary name and renamed once complete, so the newest complete one stays the one a resume
// reads.
#pragma once

#include "absl/status/statusor.h"
#include "parallel/communicator.h"

namespace memtrain::trainer {

// `memtrain train`'s exit status after a stop signal with the checkpoint saved; resume with train.resume = "auto".
inline constexpr int kExitStopped = 3;
inline constexpr int kRepeatWindowMs = 1000;

// Installs the handlers of SIGTERM and SIGUSR1 (`memtrain train` does; the library alone never does).
void install_stop_handlers();
// The signal that asked this process to stop (SIGTERM or SIGUSR1), or 0.
int stop_signal();
// Collective over `world`: the stop signal any rank received (the largest number), or 0 when none did.
absl::StatusOr<int> agreed_stop_signal(parallel::Communicator& world);
// Forgets a received signal (tests).
void clear_stop_signal();

}  // namespace memtrain::trainer
