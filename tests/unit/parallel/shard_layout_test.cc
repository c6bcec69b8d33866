// ShardLayout: every element of every tensor belongs to exactly one rank's slices, at consistent positions in the
// full and shard buffers; units are padded to multiples of ranks * kShardAlign and tensors start on blocks.
#include "parallel/shard_layout.h"

#include <gtest/gtest.h>

#include <vector>

namespace memtrain::parallel {
namespace {

TEST(ShardLayout, SegmentsOfAllRanksCoverEveryElementOnce) {
  const std::vector<std::vector<int64_t>> units = {{1000, 7}, {1, 2, 3}, {5000}, {256}};
  for (int ranks : {1, 2, 3, 4, 8}) {
    SCOPED_TRACE(ranks);
    const ShardLayout layout(units, ranks);
    int64_t numel = 0;
    for (const auto& u : units)
      for (int64_t n : u) numel += n;
    EXPECT_EQ(layout.numel(), numel);
    std::vector<int> owner(layout.full_size(), -1);
    for (int u = 0; u < layout.num_units(); ++u) {
      EXPECT_EQ(layout.unit_padded(u) % (ranks * kShardAlign), 0);
      EXPECT_EQ(layout.unit_full_pos(u) % kShardAlign, 0);
    }
    for (int r = 0; r < ranks; ++r) {
      for (const ShardSegment& s : layout.segments_of_rank(r)) {
        const int u = s.unit;
        // The piece lies in rank r's slice of its unit, at the same offset in the shard buffer.
        const int64_t slice_begin = layout.unit_full_pos(u) + r * layout.unit_slice(u);
        EXPECT_GE(s.full_pos, slice_begin);
        EXPECT_LE(s.full_pos + s.n, slice_begin + layout.unit_slice(u));
        EXPECT_EQ(s.shard_pos - layout.unit_shard_pos(u), s.full_pos - slice_begin);
        EXPECT_EQ(s.full_pos, layout.entry_full_pos(s.entry) + s.offset);
        // Pieces start on the tensor's blocks and end on one or at the tensor's end.
        EXPECT_EQ(layout.entry_full_pos(s.entry) % kShardAlign, 0);
        EXPECT_EQ(s.offset % kShardAlign, 0);
        EXPECT_TRUE((s.offset + s.n) % kShardAlign == 0 || s.offset + s.n == layout.entry_numel(s.entry));
        for (int64_t i = 0; i < s.n; ++i) {
          EXPECT_EQ(owner[s.full_pos + i], -1);
          owner[s.full_pos + i] = r;
        }
      }
    }
    int64_t owned = 0;
    for (int o : owner) owned += o >= 0;
    EXPECT_EQ(owned, numel);
    EXPECT_EQ(layout.shard_size() * ranks, layout.full_size());
  }
}

}  // namespace
}  // namespace memtrain::parallel
