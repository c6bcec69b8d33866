// Embedding kernels against a float64 reference and finite differences; thread-count independence of backward.
#include "core/cpu/embedding.h"

#include <gtest/gtest.h>

#include "tests/unit/core/cpu/kernel_test_util.h"

namespace memtrain {
namespace {

using namespace testing_util;

std::vector<int32_t> random_ids(int64_t n, int64_t V, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % V);
  return ids;
}

// Float64 oracle: out[i, :] = table[ids[i], :].
std::vector<double> embedding_ref(const std::vector<int32_t>& ids, const std::vector<double>& table, int64_t C) {
  std::vector<double> out(ids.size() * C);
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t c = 0; c < C; ++c) out[i * C + c] = table[ids[i] * C + c];
  return out;
}

struct Case {
  int64_t n, V, C;
};
// Odd widths and counts; 3000 x 130 spans several tasks in both kernels.
const Case kCases[] = {{1, 1, 1}, {7, 3, 7}, {65, 50, 65}, {3000, 5, 130}};

TEST(EmbeddingCpu, ForwardCopiesOrAddsRows) {
  for (const Case& cs : kCases) {
    const std::vector<int32_t> ids = random_ids(cs.n, cs.V, cs.n);
    const std::vector<float> table = random_uniform(cs.V * cs.C, -1.0f, 1.0f, 1);
    const std::vector<float> base = random_uniform(cs.n * cs.C, -1.0f, 1.0f, 2);
    std::vector<float> out(cs.n * cs.C, 42.0f), acc = base;
    cpu::embedding_forward(ids.data(), table.data(), cs.n, cs.C, out.data(), false, test_pool());
    cpu::embedding_forward(ids.data(), table.data(), cs.n, cs.C, acc.data(), true, test_pool());
    const std::vector<double> ref = embedding_ref(ids, to_double(table), cs.C);
    for (size_t i = 0; i < ref.size(); ++i) {
      ASSERT_EQ(out[i], ref[i]) << i;  // a copy is exact
      ASSERT_EQ(acc[i], static_cast<float>(base[i] + ref[i])) << i;  // one fp32 add: the double sum rounded once
    }
  }
}

TEST(EmbeddingCpu, BackwardMatchesFiniteDifferences) {
  for (const Case& cs : {Case{1, 1, 1}, Case{7, 3, 7}, Case{65, 50, 65}, Case{600, 5, 130}}) {  // O(n^2): kept small
    const std::vector<int32_t> ids = random_ids(cs.n, cs.V, 10 + cs.n);
    const std::vector<float> table = random_uniform(cs.V * cs.C, -1.0f, 1.0f, 11);
    const std::vector<float> r = random_uniform(cs.n * cs.C, -1.0f, 1.0f, 12);  // L = sum(r * out): dout = r
    const std::vector<float> d0 = random_uniform(cs.V * cs.C, -1.0f, 1.0f, 13);
    std::vector<float> dtable = d0;  // backward adds
    cpu::embedding_backward(ids.data(), r.data(), cs.n, cs.C, cs.V, dtable.data(), test_pool());
    for (size_t i = 0; i < dtable.size(); ++i) dtable[i] -= d0[i];
    const auto idx = fd_indices(cs.V * cs.C);
    const auto numeric = finite_differences(to_double(table), idx, [&](const auto& t) {
      return dot(r, embedding_ref(ids, t, cs.C));
    });
    // Each gradient is a fp32 sum of up to ~150 terms of size <= 1 (error ~1e-5 absolute at worst, ~1e-7
    // relative in L2), the subtraction of d0 adds ~1e-7; differences of a linear loss are good to ~1e-9.
    EXPECT_LT(rel_l2(gather(dtable, idx), numeric), 1e-5) << "n=" << cs.n << " C=" << cs.C;
  }
}

std::vector<float> run_backward(ThreadPool& pool, int64_t n, int64_t V, int64_t C) {
  const std::vector<int32_t> ids = random_ids(n, V, 21);
  const std::vector<float> dout = random_uniform(n * C, -1.0f, 1.0f, 22);
  std::vector<float> dtable = random_uniform(V * C, -1.0f, 1.0f, 23);
  cpu::embedding_backward(ids.data(), dout.data(), n, C, V, dtable.data(), pool);
  return dtable;
}

TEST(EmbeddingCpu, BackwardIsBitwiseIndependentOfThreadCount) {
  ThreadPool one(1), two(2), three(3);
  for (const Case& cs : {Case{3000, 5, 130}, Case{2048, 128, 384}, Case{100, 7, 1000}}) {
    const auto a = run_backward(one, cs.n, cs.V, cs.C);
    EXPECT_EQ(a, run_backward(two, cs.n, cs.V, cs.C));
    EXPECT_EQ(a, run_backward(three, cs.n, cs.V, cs.C));
  }
}

TEST(EmbeddingCpu, BackwardSumsRowsInIndexOrder) {
  // Three rows hit one id; fp32 addition is not associative, so the order shows: ((1 + 1e8) - 1e8) = 0 in fp32
  // (1e8 + 1 rounds to 1e8), whereas the reverse order ((-1e8 + 1e8) + 1) gives 1.
  const int32_t ids[] = {0, 0, 0};
  const float dout[] = {1.0f, 1e8f, -1e8f};
  float dtable[1] = {0.0f};
  cpu::embedding_backward(ids, dout, 3, 1, 1, dtable, test_pool());
  EXPECT_EQ(dtable[0], ((0.0f + 1.0f) + 1e8f) - 1e8f);
}

}  // namespace
}  // namespace memtrain
