// Tensor-parallel bookkeeping without communication: how [0, n) is split, which meshes a model refuses, and the
// shapes-only models of every tp rank: their parts of each parameter tile the global tensor (each element held
// by exactly one primary rank) and each part initialises to exactly its slice of the single-process tensor.
#include "model/tensor_parallel.h"

#include <gtest/gtest.h>

#include "model/model.h"
#include "tests/unit/model/tiny_model.h"

namespace memtrain::model {
namespace {

TEST(TensorParallelPart, ContiguousCoveringFirstRanksLonger) {
  for (int size : {1, 2, 3, 4, 8}) {
    for (int64_t n : {8, 61, 259, 1000}) {
      int64_t next = 0;
      for (int r = 0; r < size; ++r) {
        const IndexRange p = TensorParallel::shapes_of_rank(r, size).part(n);
        EXPECT_EQ(p.first, next) << size << " " << n << " " << r;
        EXPECT_TRUE(p.second - p.first == n / size || p.second - p.first == n / size + 1);
        if (r > 0) {
          EXPECT_LE(p.second - p.first, TensorParallel::shapes_of_rank(0, size).part_size(n));
        }
        next = p.second;
      }
      EXPECT_EQ(next, n);
    }
  }
}

using testing::tiny_model;

TEST(TensorParallelMismatch, NamesTheReason) {
  ModelConfig c = tiny_model("llama");
  EXPECT_EQ(Model::tensor_parallel_mismatch(c, 4), "");  // 2 kv heads, each shared by 2 ranks
  EXPECT_NE(Model::tensor_parallel_mismatch(c, 8).find("model.n_head"), std::string::npos);
  c.n_head = 8;
  c.n_kv_head = 4;
  EXPECT_EQ(Model::tensor_parallel_mismatch(c, 8), "");
  c.n_kv_head = 8;
  c.n_head = 8;
  c.ffn_hidden = 36;
  EXPECT_NE(Model::tensor_parallel_mismatch(c, 8).find("MLP width (36)"), std::string::npos);
  c.ffn_hidden = 64;
  c.vocab_size = 5;
  EXPECT_NE(Model::tensor_parallel_mismatch(c, 8).find("exceeds model.vocab_size (5)"), std::string::npos);
  c.n_head = 6;
  c.n_kv_head = 3;
  c.n_embd = 48;
  c.vocab_size = 61;
  EXPECT_NE(Model::tensor_parallel_mismatch(c, 2).find("must divide one another"), std::string::npos);
  auto refused = Model::create(c, *std::make_unique<ParamSet>(), TensorParallel::shapes_of_rank(0, 4));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("parallel.tp = 4"), std::string::npos) << refused.status();
}

class TensorParallelParts : public ::testing::TestWithParam<std::string> {};

TEST_P(TensorParallelParts, TileTheGlobalTensorsAndInitialiseToTheirSlices) {
  const ModelConfig cfg = tiny_model(GetParam());
  ParamSet whole;
  ASSERT_TRUE(Model::create(cfg, whole).ok());
  ASSERT_TRUE(whole.allocate().ok());
  whole.initialize(11);
  for (int tp : {2, 4}) {
    std::vector<int> primary_hits;  // per global element of all parameters, concatenated
    std::vector<std::unique_ptr<ParamSet>> ranks;
    for (int r = 0; r < tp; ++r) {
      ranks.push_back(std::make_unique<ParamSet>());
      ASSERT_TRUE(Model::create(cfg, *ranks.back(), TensorParallel::shapes_of_rank(r, tp)).ok());
      ASSERT_EQ(ranks.back()->all().size(), whole.all().size());
    }
    for (size_t i = 0; i < whole.all().size(); ++i) {
      const Param& g = *whole.all()[i];
      std::vector<int> held(g.value.numel(), 0), primary(g.value.numel(), 0);
      for (int r = 0; r < tp; ++r) {
        const Param& p = *ranks[r]->all()[i];
        ASSERT_EQ(p.name, g.name);
        ASSERT_EQ(p.shape, g.shape);
        std::vector<float> local(shape_numel(p.local_shape));
        ParamSet::initialize_local(p, 11, 0, static_cast<int64_t>(local.size()), local.data());
        // A ZeRO shard's piece of the local tensor: its slice of the same values.
        const int64_t mid = static_cast<int64_t>(local.size()) / 3;
        std::vector<float> piece(local.size() - mid);
        ParamSet::initialize_local(p, 11, mid, static_cast<int64_t>(piece.size()), piece.data());
        EXPECT_TRUE(std::equal(piece.begin(), piece.end(), local.begin() + mid)) << p.name;
        int64_t covered = 0;
        for_each_global_run(p, [&](int64_t l, int64_t gl, int64_t n) {
          covered += n;
          for (int64_t k = 0; k < n; ++k) {
            ++held[gl + k];
            if (p.tp.primary) ++primary[gl + k];
            ASSERT_EQ(local[l + k], g.value.f32()[gl + k]) << p.name << " rank " << r;
          }
        });
        EXPECT_EQ(covered, static_cast<int64_t>(local.size())) << p.name;
      }
      for (size_t e = 0; e < held.size(); ++e) {
        ASSERT_GE(held[e], 1) << g.name << " element " << e << " held by no rank at tp " << tp;
        ASSERT_EQ(primary[e], 1) << g.name << " element " << e << " at tp " << tp;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, TensorParallelParts, ::testing::Values("gpt2", "llama"));

}  // namespace
}  // namespace memtrain::model
