// AsyncSwap: the thread and bookkeeping both swap tiers share. write/read/release queue jobs that one worker thread
// runs in order (so a ticket's read always follows its write); wait blocks until a ticket has nothing in flight.
// A tier implements store/load/free, which run on the worker only.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "core/swap_tier.h"

namespace memtrain::offload {

class AsyncSwap : public SwapTier {
 public:
  ~AsyncSwap() override;
  absl::StatusOr<uint64_t> write(const Tensor& t) override;
  absl::Status read(uint64_t ticket, const Tensor& into) override;
  absl::Status wait(uint64_t ticket) override;
  void release(uint64_t ticket) override;
  int64_t bytes_written() const override { return written_.load(); }
  int64_t bytes_read() const override { return read_.load(); }

 protected:
  AsyncSwap() = default;
  // The worker starts once the tier is fully built and must stop before its members go: call start() at the end
  // of the derived constructor (or factory) and stop() first thing in the derived destructor.
  void start();
  void stop();
  // On the worker thread, one at a time: keep t's bytes under `ticket`, copy them into `into`, forget them.
  virtual absl::Status store(uint64_t ticket, const Tensor& t) = 0;
  virtual absl::Status load(uint64_t ticket, const Tensor& into) = 0;
  virtual void free(uint64_t ticket) = 0;

 private:
  enum class Kind { kWrite, kRead, kRelease };
  struct Job {
    Kind kind;
    uint64_t ticket;
    Tensor tensor;  // what a write reads or a read fills; held until the job is done
  };
  struct TicketState {
    int in_flight = 0;
    absl::Status status;
  };
  void run();
  absl::Status queue(Job job);

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  std::map<uint64_t, TicketState> tickets_;
  uint64_t next_ticket_ = 1;
  bool stopping_ = false;
  std::thread worker_;
  std::atomic<int64_t> written_{0}, read_{0};
};

}  // namespace memtrain::offload
