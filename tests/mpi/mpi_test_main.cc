// gtest main for tests/mpi: starts MPI through World, prints full output on rank 0 and failures on every rank
// (prefixed "[rank r]"), and exits non-zero on every rank if any rank failed, so mpirun reports the failure.
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/mpi/mpi_test_env.h"

namespace memtrain::parallel::testing {
namespace {
World* g_world = nullptr;  // test-harness only: the library itself has no global world

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                   r.line_number(), r.summary());
  }

 private:
  int rank_;
};
}  // namespace

World& world() { return *g_world; }

}  // namespace memtrain::parallel::testing

int main(int argc, char** argv) {
  using namespace memtrain::parallel;
  ::testing::InitGoogleTest(&argc, argv);
  auto world = World::init(&argc, &argv, {.timeout_s = 30, .thread_multiple = true});  // async checkpoint tests
  if (!world.ok()) {
    std::fprintf(stderr, "World::init: %s\n", world.status().ToString().c_str());
    return 1;
  }
  memtrain::parallel::testing::g_world = world->get();
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if ((*world)->rank() != 0) delete listeners.Release(listeners.default_result_printer());
  listeners.Append(new memtrain::parallel::testing::RankFailurePrinter((*world)->rank()));
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  // Every rank agrees on the verdict, so a failure on rank 5 alone still fails rank 0's exit status.
  int any_failed = failed;
  const absl::Status s = (*world)->comm().all_reduce(&failed, &any_failed, 1, memtrain::DType::kI32,
                                                     ReduceOp::kMax);
  if (!s.ok()) std::fprintf(stderr, "[rank %d] final vote: %s\n", (*world)->rank(), s.ToString().c_str());
  if ((*world)->rank() == 0 && any_failed) std::fprintf(stderr, "some rank failed (see [rank r] lines above)\n");
  const int rc = (any_failed || !s.ok()) ? 1 : 0;
  world->reset();  // MPI_Finalize (or MPI_Abort if a communicator had to be leaked)
  return rc;
}
