// Collective deadlines under mpirun: a rank that never arrives makes the others fail with DeadlineExceeded naming
// the collective and the missing rank, instead of hanging; the late rank then completes, so shutdown stays clean.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "parallel/communicator.h"
#include "tests/mpi/mpi_test_env.h"

namespace memtrain::parallel {
namespace {

using testing::world;
using Clock = std::chrono::steady_clock;

TEST(Deadline, MissingRankIsNamedAndOthersDoNotHang) {
  constexpr double kTimeoutS = 2;
  constexpr int kLate = 1;
  // Declared before the communicator: the abandoned all-reduce may still write here until its destructor returns.
  std::vector<float> in(5), out(5, -1);
  for (int i = 0; i < 5; ++i) in[i] = static_cast<float>(world().rank() + i);
  auto sub = world().comm().split(0, world().rank(), "late");
  ASSERT_TRUE(sub.ok()) << sub.status();
  Communicator& c = **sub;
  c.set_timeout_s(kTimeoutS);
  ASSERT_TRUE(c.barrier().ok());

  if (c.rank() == kLate) {
    // Arrive after the others have timed out and finished their grace period (<= 0.5 s at this timeout).
    std::this_thread::sleep_for(std::chrono::duration<double>(kTimeoutS + 1.5));
    absl::Status s = c.all_reduce(in.data(), out.data(), 5, DType::kF32, ReduceOp::kSum);
    // Joining late still completes: the others keep driving their abandoned all-reduce in the destructor.
    EXPECT_TRUE(s.ok()) << s;
  } else {
    const auto t0 = Clock::now();
    absl::Status s = c.all_reduce(in.data(), out.data(), 5, DType::kF32, ReduceOp::kSum);
    const double took = std::chrono::duration<double>(Clock::now() - t0).count();
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    const std::string msg(s.message());
    EXPECT_NE(msg.find("all_reduce"), std::string::npos) << msg;
    EXPECT_NE(msg.find("late (size"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing ranks 1 (world ranks 1)"), std::string::npos) << msg;
    // The deadline plus at most the 0.5 s grace, with slack for 8 ranks sharing 2 cores.
    EXPECT_GE(took, kTimeoutS);
    EXPECT_LT(took, kTimeoutS + 1.5) << msg;
    // Poisoned: a later call fails at once rather than mismatching with the abandoned one.
    absl::Status again = c.barrier();
    EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition) << again;
    if (c.rank() == 0) std::printf("deadline message: %s\n", msg.c_str());
  }
  sub->reset();  // the abandoned all-reduce completes here, so nothing leaks
  EXPECT_FALSE(world().unclean());
  const int p = world().comm().size();
  if (world().rank() == kLate) {
    for (int i = 0; i < 5; ++i) EXPECT_EQ(out[i], p * (p - 1) / 2 + p * i);
  }
}

}  // namespace
}  // namespace memtrain::parallel
