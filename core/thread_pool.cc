#include "core/thread_pool.h"

#include <memory>

#include "core/status.h"

namespace memtrain {
namespace {
thread_local bool in_pool_task = false;

std::unique_ptr<ThreadPool>& global_slot() {
  static std::unique_ptr<ThreadPool> pool;
  return pool;
}
}  // namespace

ThreadPool::ThreadPool(int threads) : threads_(threads) {
  MEMTRAIN_CHECK(threads >= 1);
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  in_pool_task = true;
  while (true) {
    const std::function<void(int64_t)>* job;
    int64_t n;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      n = job_n_;
    }
    for (int64_t i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < n;) (*job)(i);
    std::lock_guard<std::mutex> lock(mu_);
    if (--busy_ == 0) done_cv_.notify_one();
  }
}

void ThreadPool::run(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  if (threads_ == 1 || n == 1 || in_pool_task) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::lock_guard<std::mutex> run_lock(run_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    job_n_ = n;
    next_.store(0, std::memory_order_relaxed);
    busy_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  work_cv_.notify_all();
  in_pool_task = true;
  for (int64_t i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i);
  in_pool_task = false;
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return busy_ == 0; });
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  const int64_t chunks = (n + grain - 1) / grain;
  run(chunks, [&](int64_t c) { fn(c * grain, std::min(n, (c + 1) * grain)); });
}

ThreadPool& ThreadPool::global() {
  auto& slot = global_slot();
  if (!slot) {
    const unsigned hw = std::thread::hardware_concurrency();
    slot = std::make_unique<ThreadPool>(hw == 0 ? 1 : static_cast<int>(hw));
  }
  return *slot;
}

void ThreadPool::set_global_threads(int threads) {
  auto& slot = global_slot();
  if (slot && slot->size() == threads) return;
  slot.reset();
  slot = std::make_unique<ThreadPool>(threads);
}

}  // namespace memtrain
