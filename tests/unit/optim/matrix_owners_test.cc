// Owners of whole matrices under ZeRO-1/2: every matrix has exactly one owner, the owners balance the elements each
// rank updates (no rank ends more than the largest matrix above the least loaded), and a rank updates exactly its
// own pieces of everything else.
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
  const std::vector<int> owners = assign_matrix_owners(layout, whole);
  std::vector<int64_t> load(4, 0);
  int64_t largest = 0;
  for (int r = 0; r < 4; ++r) {
    const RankUpdates u = updates_of_rank(layout, owners, r);
    for (const parallel::ShardSegment& s : u.pieces) {
      EXPECT_FALSE(whole[s.entry]);
      load[r] += s.n;
    }
    load[r] += u.whole_elements;
  }
  for (int e = 0; e < layout.num_entries(); ++e) {
    if (!whole[e]) {
      EXPECT_EQ(owners[e], -1) << e;
      continue;
    }
    ASSERT_GE(owners[e], 0) << e;
    ASSERT_LT(owners[e], 4) << e;
    largest = std::max(largest, layout.entry_numel(e));
    int held = 0;
    for (int r = 0; r < 4; ++r) {
      const std::vector<int> owned = updates_of_rank(layout, owners, r).whole;
      held += static_cast<int>(std::count(owned.begin(), owned.end(), e));
    }
    EXPECT_EQ(held, 1) << e;
  }
  EXPECT_LE(*std::max_element(load.begin(), load.end()), *std::min_element(load.begin(), load.end()) + largest);
  EXPECT_EQ(load[0] + load[1] + load[2] + load[3], layout.numel());
}

}  // namespace
}  // namespace memtrain::optim
