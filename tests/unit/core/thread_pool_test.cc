// The kernel thread pool: every index runs exactly once, chunks depend only on (n, grain), nested calls run
// serially, and concurrent callers are serialised.
#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace memtrain {
namespace {

TEST(ThreadPool, EveryIndexRunsOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 7, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      pool.run(n, [&](int64_t i) { hits[i]++; });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << threads << " " << n << " " << i;
    }
  }
}

TEST(ThreadPool, ChunksDependOnlyOnSizeAndGrain) {
  std::set<std::pair<int64_t, int64_t>> seen[2];
  for (int t : {1, 4}) {
    ThreadPool pool(t);
    std::mutex mu;
    pool.parallel_for(1003, 100, [&](int64_t lo, int64_t hi) {
      std::lock_guard<std::mutex> lock(mu);
      seen[t == 1 ? 0 : 1].insert({lo, hi});
    });
  }
  EXPECT_EQ(seen[0], seen[1]);
  EXPECT_EQ(seen[0].size(), 11u);
  EXPECT_EQ(*seen[0].rbegin(), std::make_pair(int64_t{1000}, int64_t{1003}));
}

TEST(ThreadPool, NestedCallsRunInline) {
  ThreadPool pool(2);
  std::atomic<int> inner{0};
  pool.run(4, [&](int64_t) { pool.run(3, [&](int64_t) { inner++; }); });
  EXPECT_EQ(inner.load(), 12);
}

TEST(ThreadPool, ConcurrentCallersAreSerialised) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 3; ++c)
    callers.emplace_back([&] {
      for (int r = 0; r < 50; ++r) pool.run(10, [&](int64_t i) { sum += i; });
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(sum.load(), 3 * 50 * 45);
}

}  // namespace
}  // namespace memtrain
