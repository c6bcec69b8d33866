// A small fixed-size thread pool for CPU kernels. Work is split into chunks whose boundaries depend only on the
// problem size, never on the thread count, so kernels that reduce within a chunk and combine chunks in order are
// bitwise reproducible with any number of threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace memtrain {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads >= 1, the caller included
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return threads_; }

  // Calls fn(i) for each i in [0, n) and returns when all calls are done. Called from inside a task, it runs
  // serially on the calling thread.
  void run(int64_t n, const std::function<void(int64_t)>& fn);
  // fn(begin, end) over [0, n) in chunks of `grain` elements (the last may be shorter).
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // The process-wide pool kernels use; resized by set_global_threads (default: hardware concurrency).
  static ThreadPool& global();
  static void set_global_threads(int threads);

 private:
  void worker_loop();

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex run_mu_;  // one job at a time
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  uint64_t generation_ = 0;
  bool stop_ = false;
  int busy_ = 0;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  std::atomic<int64_t> next_{0};
};

}  // namespace memtrain
