// gtest main shared by every test binary; pins the kernel pool to 2 threads so timings and splits are stable.
#include <gtest/gtest.h>

#include "core/thread_pool.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  memtrain::ThreadPool::set_global_threads(2);
  return RUN_ALL_TESTS();
}
