// MEMTRAIN_FAULT: parsing, kill at the N-th hit of a named point (and only that point), list/count output, a bad
// value as a usage error, and nothing at all when unset. Death tests re-execute the binary ("threadsafe" style) so
// that each child reads the environment afresh: the setting is read once per process.
#include "core/fault_injection.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <csignal>
#include <cstdlib>
#include <thread>
#include <vector>

namespace memtrain::fault {
namespace {

TEST(FaultSpec, ParsesNameHitListAndCount) {
  auto s = parse_spec("file_io.after_write:3");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->mode, Spec::Mode::kKill);
  EXPECT_EQ(s->name, "file_io.after_write");
  EXPECT_EQ(s->hit, 3);
  s = parse_spec("a:b:12");  // the last colon separates the count
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->name, "a:b");
  EXPECT_EQ(s->hit, 12);
  EXPECT_EQ(parse_spec("list")->mode, Spec::Mode::kList);
  EXPECT_EQ(parse_spec("count")->mode, Spec::Mode::kCount);
}

TEST(FaultSpec, RejectsMalformedValues) {
  for (const char* bad : {"", "train.step", "train.step:", ":3", "train.step:0", "train.step:-1", "train.step:+2",
                          "train.step: 2", "train.step:2x", "train.step:99999999999999999999", "LIST"}) {
    EXPECT_FALSE(parse_spec(bad).has_value()) << bad;
  }
}

class FaultDeath : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(FaultDeath, KillsAtTheNthHitOfTheNamedPointOnly) {
  setenv("MEMTRAIN_FAULT", "t.a:3", 1);
  // Two hits of t.a and any number of other points: alive.
  EXPECT_EXIT(
      {
        for (int i = 0; i < 5; ++i) MEMTRAIN_FAULT_POINT("t.b");
        MEMTRAIN_FAULT_POINT("t.a");
        MEMTRAIN_FAULT_POINT("t.a");
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
  EXPECT_EXIT(
      {
        for (int i = 0; i < 3; ++i) MEMTRAIN_FAULT_POINT("t.a");
        std::exit(0);
      },
      ::testing::KilledBySignal(SIGKILL), "fault injection: SIGKILL at t.a \\(hit 3\\)");
}

TEST_F(FaultDeath, CountsHitsFromManyThreadsExactly) {
  setenv("MEMTRAIN_FAULT", "t.threads:250", 1);
  auto hit_from_4_threads = [](int per_thread) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([per_thread] {
        for (int i = 0; i < per_thread; ++i) MEMTRAIN_FAULT_POINT("t.threads");
      });
    }
    for (auto& t : threads) t.join();
    std::exit(0);
  };
  EXPECT_EXIT(hit_from_4_threads(62), ::testing::ExitedWithCode(0), "");  // 248 hits
  EXPECT_EXIT(hit_from_4_threads(63), ::testing::KilledBySignal(SIGKILL), "SIGKILL at t.threads \\(hit 250\\)");
}

TEST_F(FaultDeath, ListPrintsEachPointOnceAndCountPrintsEveryHit) {
  setenv("MEMTRAIN_FAULT", "list", 1);
  EXPECT_EXIT(
      {
        MEMTRAIN_FAULT_POINT("t.a");
        MEMTRAIN_FAULT_POINT("t.b");
        MEMTRAIN_FAULT_POINT("t.a");
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), ::testing::StrEq("fault point: t.a\nfault point: t.b\n"));
  setenv("MEMTRAIN_FAULT", "count", 1);
  EXPECT_EXIT(
      {
        MEMTRAIN_FAULT_POINT("t.a");
        MEMTRAIN_FAULT_POINT("t.b");
        MEMTRAIN_FAULT_POINT("t.a");
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), ::testing::StrEq("fault point: t.a #1\nfault point: t.b #1\nfault point: t.a #2\n"));
}

TEST_F(FaultDeath, MalformedValueIsAUsageError) {
  setenv("MEMTRAIN_FAULT", "train.step", 1);
  EXPECT_EXIT(MEMTRAIN_FAULT_POINT("t.a"), ::testing::ExitedWithCode(2), "expected NAME:N");
}

// Runs last in this process (gtest keeps file order): it caches "off" for the rest of the process.
TEST(FaultPoint, UnsetIsOffAfterTheFirstPoint) {
  unsetenv("MEMTRAIN_FAULT");
  for (int i = 0; i < 1000; ++i) MEMTRAIN_FAULT_POINT("t.a");
  EXPECT_EQ(internal::g_state.load(), internal::kOff);
}

}  // namespace
}  // namespace memtrain::fault
