// Fused softmax cross-entropy against a float64 reference and finite differences; ignored rows; aliasing;
// thread-count independence.
#include "core/cpu/cross_entropy.h"

#include <gtest/gtest.h>

#include "tests/unit/core/cpu/kernel_test_util.h"

namespace memtrain {
namespace {

using namespace testing_util;

// Every test runs under AVX2 and under AVX-512 (kernel_test_util.h).
class CrossEntropyCpu : public SimdLevelTest {};
MEMTRAIN_INSTANTIATE_SIMD_LEVELS(CrossEntropyCpu);

// Float64 oracle: per-row loss logsumexp(row) - row[target] (0 for target < 0).
std::vector<double> losses_ref(const std::vector<double>& logits, const std::vector<int32_t>& targets, int64_t V) {
  std::vector<double> out(targets.size());
  for (size_t r = 0; r < targets.size(); ++r) {
    if (targets[r] < 0) continue;
    const double* x = logits.data() + r * V;
    const double mx = *std::max_element(x, x + V);
    double s = 0;
    for (int64_t c = 0; c < V; ++c) s += std::exp(x[c] - mx);
    out[r] = mx + std::log(s) - x[targets[r]];
  }
  return out;
}

struct Case {
  int64_t rows, V;
};
const Case kCases[] = {{1, 1}, {3, 7}, {3, 45}, {5, 65}, {4, 4097}, {37, 128}};  // odd V: 8- and 16-wide tails

struct Inputs {
  std::vector<float> logits;
  std::vector<int32_t> targets;
};

Inputs make_inputs(const Case& cs, uint64_t seed) {
  Inputs in{random_uniform(cs.rows * cs.V, -8.0f, 8.0f, seed), std::vector<int32_t>(cs.rows)};
  std::mt19937_64 rng(seed);
  for (auto& t : in.targets) t = static_cast<int32_t>(rng() % cs.V);
  if (cs.rows > 1) in.targets[1] = -1;  // ignored (padding) row
  // A row far from 0: only max subtraction keeps exp finite.
  for (int64_t c = 0; c < cs.V; ++c) in.logits[c] += 1000.0f;
  return in;
}

TEST_P(CrossEntropyCpu, LossAndGradientMatchFloat64Reference) {
  for (const Case& cs : kCases) {
    const Inputs in = make_inputs(cs, cs.rows * cs.V);
    const float scale = 1.0f / 3;
    std::vector<float> d(cs.rows * cs.V, 7.0f), losses(cs.rows, 7.0f);
    const double total = cpu::softmax_cross_entropy(in.logits.data(), in.targets.data(), cs.rows, cs.V, scale,
                                                    d.data(), losses.data(), test_pool());
    const std::vector<double> ref = losses_ref(to_double(in.logits), in.targets, cs.V);
    double ref_total = 0;
    for (int64_t r = 0; r < cs.rows; ++r) {
      ref_total += ref[r];
      // fp32 exp sums over V terms: ~1e-6 relative error in the sum, so ~1e-6 absolute in the log (the +1000 row
      // too: max - target is formed in double from exact fp32 values); losses[] adds one fp32 rounding.
      EXPECT_NEAR(losses[r], ref[r], 2e-6 * (1 + ref[r])) << "V=" << cs.V << " row " << r;
      if (in.targets[r] < 0) {
        for (int64_t c = 0; c < cs.V; ++c) ASSERT_EQ(d[r * cs.V + c], 0.0f);
      }
    }
    EXPECT_NEAR(total, ref_total, 2e-6 * (1 + ref_total));
    // The gradient of sum(scale * loss) is dlogits: central differences over the float64 loss, at a sample of
    // entries plus every target entry (where the -scale lies). Most entries are tiny (p ~ 1/V), so h = 1e-4 keeps
    // rounding noise (~1e-16 * |L| / h ~ 1e-11) well below them; truncation, h^2 / 6 * |p'''| <= 2e-10 * p, too.
    // fp32 probabilities are good to ~1e-6 relative.
    auto idx = fd_indices(cs.rows * cs.V);
    for (int64_t r = 0; r < cs.rows; ++r)
      if (in.targets[r] >= 0) idx.push_back(r * cs.V + in.targets[r]);
    const auto numeric = finite_differences(
        to_double(in.logits), idx,
        [&](const auto& v) {
          double s = 0;
          for (double l : losses_ref(v, in.targets, cs.V)) s += scale * l;
          return s;
        },
        /*h=*/1e-4);
    EXPECT_LT(rel_l2(gather(d, idx), numeric), 1e-5) << "V=" << cs.V;
  }
}

TEST_P(CrossEntropyCpu, OptionalOutputsAndAliasingGiveTheSameBits) {
  const Case cs{37, 4097};
  const Inputs in = make_inputs(cs, 5);
  std::vector<float> d(cs.rows * cs.V), losses(cs.rows);
  const double total = cpu::softmax_cross_entropy(in.logits.data(), in.targets.data(), cs.rows, cs.V, 0.5f, d.data(),
                                                  losses.data(), test_pool());
  EXPECT_EQ(total, cpu::softmax_cross_entropy(in.logits.data(), in.targets.data(), cs.rows, cs.V, 0.5f, nullptr,
                                              nullptr, test_pool()));
  std::vector<float> inplace = in.logits;
  EXPECT_EQ(total, cpu::softmax_cross_entropy(inplace.data(), in.targets.data(), cs.rows, cs.V, 0.5f,
                                              inplace.data(), nullptr, test_pool()));
  EXPECT_EQ(inplace, d);  // dlogits may alias logits
}

TEST_P(CrossEntropyCpu, AllRowsIgnoredGivesZero) {
  const std::vector<float> logits = random_uniform(3 * 9, -1.0f, 1.0f, 1);
  const std::vector<int32_t> targets = {-1, -1, -100};
  std::vector<float> d(27, 1.0f), losses(3, 1.0f);
  EXPECT_EQ(cpu::softmax_cross_entropy(logits.data(), targets.data(), 3, 9, 1.0f, d.data(), losses.data(),
                                       test_pool()),
            0.0);
  EXPECT_EQ(d, std::vector<float>(27, 0.0f));
  EXPECT_EQ(losses, std::vector<float>(3, 0.0f));
}

TEST_P(CrossEntropyCpu, IsBitwiseIndependentOfThreadCount) {
  ThreadPool one(1), two(2), three(3);
  const Case cs{2048, 128};
  const Inputs in = make_inputs(cs, 9);
  auto run = [&](ThreadPool& pool) {
    std::vector<float> d(cs.rows * cs.V), losses(cs.rows);
    const double total = cpu::softmax_cross_entropy(in.logits.data(), in.targets.data(), cs.rows, cs.V, 1e-3f,
                                                    d.data(), losses.data(), pool);
    return std::make_tuple(total, d, losses);
  };
  const auto a = run(one);
  EXPECT_TRUE(a == run(two));
  EXPECT_TRUE(a == run(three));
}

}  // namespace
}  // namespace memtrain
