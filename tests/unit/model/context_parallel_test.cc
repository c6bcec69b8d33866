// ContextParallel's chunk layout: every token of a sequence lands on exactly one (rank, slot), at the position
// positions() reports for it, also with all-to-all parts cutting each chunk into pieces, and with load balancing
// every ring rank attends over the same number of causal pairs.
#include "model/context_parallel.h"

#include <gtest/gtest.h>

#include <utility>
#include <vector>

namespace memtrain::model {
namespace {

TEST(ContextParallel, ChunksCoverEverySequenceOnceAtTheirPositions) {
  const int64_t B = 3, T = 48;
  for (auto [size, a2a] : {std::pair{1, 1}, {2, 1}, {3, 1}, {4, 1}, {2, 2}, {4, 2}, {6, 3}, {4, 4}}) {
    for (bool balanced : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "cp " << size << " a2a " << a2a << (balanced ? " balanced" : ""));
      // Token (b, t) holds b * 1000 + t, so a local token names where it came from.
      auto whole = Tensor::empty({B, T}, DType::kI32, MemCategory::kActivations);
      ASSERT_TRUE(whole.ok());
      for (int64_t i = 0; i < B * T; ++i) whole->i32()[i] = static_cast<int32_t>(i / T * 1000 + i % T);
      std::vector<int> seen(B * T, 0);
      std::vector<int64_t> causal_pairs;
      for (int r = 0; r < size; ++r) {
        const ContextParallel cp = ContextParallel::shapes_of_rank(r, size, balanced, a2a);
        ASSERT_EQ(cp.group_size(), size);
        ASSERT_EQ(T % cp.pieces(), 0);
        auto local = cp.local_tokens(*whole);
        ASSERT_TRUE(local.ok());
        const int64_t rows = local->dim(0), c = local->dim(1);
        ASSERT_EQ(rows, cp.slots * B);
        ASSERT_EQ(c, T / cp.pieces());
        auto pos = cp.positions(rows, c);
        ASSERT_TRUE(pos.ok());
        int64_t pairs = 0;
        for (int64_t i = 0; i < rows * c; ++i) {
          const int32_t token = local->i32()[i];
          EXPECT_EQ(token % 1000, pos->i32()[i]) << "local token " << i;
          EXPECT_EQ(token / 1000, i / c % B) << "slot rows are the B sequences in order";
          ++seen[token / 1000 * T + token % 1000];
          pairs += pos->i32()[i] + 1;  // keys a query at position p sees
        }
        // A ring rank's attention runs over its a2a group's pieces together (whole chunks).
        if (cp.a2a_rank == 0) causal_pairs.push_back(0);
        causal_pairs.back() += pairs;
      }
      for (int n : seen) EXPECT_EQ(n, 1);
      if (balanced) {
        for (int64_t p : causal_pairs) EXPECT_EQ(p, causal_pairs[0]) << "load balancing evens the attention work";
      }
    }
  }
}

}  // namespace
}  // namespace memtrain::model
