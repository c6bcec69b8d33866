#include "offload/async_swap.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::offload {

AsyncSwap::~AsyncSwap() { MEMTRAIN_CHECK_MSG(!worker_.joinable(), "a swap tier's destructor must call stop()"); }

void AsyncSwap::start() { worker_ = std::thread([this] { run(); }); }

void AsyncSwap::stop() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

absl::Status AsyncSwap::queue(Job job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tickets_.find(job.ticket);
    if (it == tickets_.end()) return absl::InvalidArgumentError(absl::StrCat(name(), ": no ticket ", job.ticket));
    ++it->second.in_flight;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_all();
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> AsyncSwap::write(const Tensor& t) {
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ticket = next_ticket_++;
    tickets_[ticket];
  }
  MEMTRAIN_RETURN_IF_ERROR(queue({Kind::kWrite, ticket, t}));
  return ticket;
}

absl::Status AsyncSwap::read(uint64_t ticket, const Tensor& into) { return queue({Kind::kRead, ticket, into}); }

absl::Status AsyncSwap::wait(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = tickets_.find(ticket);
  if (it == tickets_.end()) return absl::InvalidArgumentError(absl::StrCat(name(), ": no ticket ", ticket));
  cv_.wait(lock, [&] { return it->second.in_flight == 0; });
  return it->second.status;
}

void AsyncSwap::release(uint64_t ticket) { MEMTRAIN_CHECK_OK(queue({Kind::kRelease, ticket, Tensor()})); }

void AsyncSwap::run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, nothing left
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    absl::Status status;
    switch (job.kind) {
      case Kind::kWrite:
        status = store(job.ticket, job.tensor);
        if (status.ok()) written_ += static_cast<int64_t>(job.tensor.nbytes());
        break;
      case Kind::kRead:
        status = load(job.ticket, job.tensor);
        if (status.ok()) read_ += static_cast<int64_t>(job.tensor.nbytes());
        break;
      case Kind::kRelease:
        free(job.ticket);
        break;
    }
    job.tensor = Tensor();  // a written tensor's memory goes back now, not when the next job arrives
    lock.lock();
    auto it = tickets_.find(job.ticket);
    if (job.kind == Kind::kRelease) {
      tickets_.erase(it);
    } else {
      --it->second.in_flight;
      if (it->second.status.ok()) it->second.status = status;
    }
    cv_.notify_all();
  }
}

}  // namespace memtrain::offload
