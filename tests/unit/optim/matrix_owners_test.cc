// Owners of whole matrices under ZeRO-1/2: every matrix has exactly one owner, and the owners balance the elements
// each rank updates (no rank ends more than the largest matrix above the least loaded).
#include "optim/matrix_owners.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace memtrain::optim {
namespace {

TEST(MatrixOwners, EveryMatrixHasOneOwnerAndTheLoadIsBalanced) {
  // Three units: an embedding-like vector-free unit, two layers of matrices and vectors.
  const parallel::ShardLayout layout({{8192, 2048}, {3072, 96, 1024, 4096, 4096, 32}, {3072, 96, 1024, 4096, 4096, 32}},
                                     4);
  std::vector<bool> whole(layout.num_entries(), false);
  for (int e : {2, 4, 5, 6, 8, 10, 11, 12}) whole[e] = true;
  std::vector<int64_t> piecewise(4, 0), whole_numel(layout.num_entries(), 0);
  for (int r = 0; r < 4; ++r)
    for (const parallel::ShardSegment& s : layout.segments_of_rank(r))
      if (!whole[s.entry]) piecewise[r] += s.n;
  for (int e = 0; e < layout.num_entries(); ++e)
    if (whole[e]) whole_numel[e] = layout.entry_numel(e);
  const std::vector<int> owners = assign_matrix_owners(piecewise, whole_numel);
  std::vector<int64_t> load = piecewise;
  int64_t largest = 0;
  for (int e = 0; e < layout.num_entries(); ++e) {
    if (!whole[e]) {
      EXPECT_EQ(owners[e], -1) << e;
      continue;
    }
    ASSERT_GE(owners[e], 0) << e;
    ASSERT_LT(owners[e], 4) << e;
    largest = std::max(largest, layout.entry_numel(e));
    load[owners[e]] += layout.entry_numel(e);
  }
  EXPECT_LE(*std::max_element(load.begin(), load.end()), *std::min_element(load.begin(), load.end()) + largest);
  EXPECT_EQ(load[0] + load[1] + load[2] + load[3], layout.numel());
}

}  // namespace
}  // namespace memtrain::optim
