// Causal attention over rows packed from several examples (`first`: each query's first visible key) against the
// same kernel run on every example alone as its own sequence: outputs, log-sum-exps and all three gradients agree
// within the fp32 rounding of a different block alignment (the same bounds as attention_test's float64 checks,
// 5e-6 forward and 2e-5 backward; a query that sees a key of another example is off by 1e-1 or more). Examples
// start and end inside and across the 64-key blocks, and a padded tail where every position is its own example
// (what data/instruction_data lays out) stays finite.
#include "core/cpu/attention.h"
#include "tests/unit/core/cpu/attention_reference.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace memtrain {
namespace {

using attention_ref::random_floats;

constexpr int64_t B = 2, T = 150, H = 4, Hkv = 2, D = 16;
constexpr int64_t QW = H * D, KW = Hkv * D;

double rel(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

TEST(AttentionPacked, EachExampleAttendsAsIfAlone) {
  // Row 0: examples [0, 40), [40, 113), [113, 150); row 1: [0, 100) then 50 padding positions.
  const std::vector<std::vector<std::pair<int64_t, int64_t>>> examples = {
      {{0, 40}, {40, 113}, {113, 150}}, {{0, 100}}};
  std::vector<int32_t> first(B * T);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) first[b * T + t] = static_cast<int32_t>(t);  // padding: alone
    for (auto [s, e] : examples[b])
      for (int64_t t = s; t < e; ++t) first[b * T + t] = static_cast<int32_t>(s);
  }
  const std::vector<float> q = random_floats(B * T * QW, 2.0f, 1), k = random_floats(B * T * KW, 2.0f, 2),
                           v = random_floats(B * T * KW, 1.0f, 3), dout = random_floats(B * T * QW, 1.0f, 4);
  std::vector<float> out(B * T * QW), lse(B * H * T), dq(B * T * QW), dk(B * T * KW), dv(B * T * KW);
  ThreadPool& pool = ThreadPool::global();
  cpu::attention_forward(q.data(), QW, k.data(), KW, v.data(), KW, B, T, H, Hkv, D, out.data(), QW, lse.data(), pool,
                         first.data());
  cpu::attention_backward(dout.data(), QW, q.data(), QW, k.data(), KW, v.data(), KW, out.data(), QW, lse.data(), B, T,
                          H, Hkv, D, dq.data(), QW, dk.data(), KW, dv.data(), KW, pool, first.data());
  for (float x : out) ASSERT_TRUE(std::isfinite(x));
  for (float x : dk) ASSERT_TRUE(std::isfinite(x));

  for (int64_t b = 0; b < B; ++b) {
    for (auto [s, e] : examples[b]) {
      SCOPED_TRACE(::testing::Message() << "row " << b << " example [" << s << ", " << e << ")");
      const int64_t n = e - s;
      auto slice = [&](const std::vector<float>& x, int64_t w) {
        return std::vector<float>(x.begin() + (b * T + s) * w, x.begin() + (b * T + e) * w);
      };
      const std::vector<float> qs = slice(q, QW), ks = slice(k, KW), vs = slice(v, KW), ds = slice(dout, QW);
      std::vector<float> o(n * QW), l(H * n), gq(n * QW), gk(n * KW), gv(n * KW);
      cpu::attention_forward(qs.data(), QW, ks.data(), KW, vs.data(), KW, 1, n, H, Hkv, D, o.data(), QW, l.data(),
                             pool);
      cpu::attention_backward(ds.data(), QW, qs.data(), QW, ks.data(), KW, vs.data(), KW, o.data(), QW, l.data(), 1,
                              n, H, Hkv, D, gq.data(), QW, gk.data(), KW, gv.data(), KW, pool);
      EXPECT_LE(rel(slice(out, QW).data(), o.data(), n * QW), 5e-6);
      std::vector<float> lse_packed;
      for (int64_t h = 0; h < H; ++h)
        for (int64_t t = s; t < e; ++t) lse_packed.push_back(lse[(b * H + h) * T + t]);
      std::vector<float> lse_alone;
      for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < n; ++t) lse_alone.push_back(l[h * n + t]);
      EXPECT_LE(rel(lse_packed.data(), lse_alone.data(), H * n), 5e-6);
      EXPECT_LE(rel(slice(dq, QW).data(), gq.data(), n * QW), 2e-5);
      EXPECT_LE(rel(slice(dk, KW).data(), gk.data(), n * KW), 2e-5);
      EXPECT_LE(rel(slice(dv, KW).data(), gv.data(), n * KW), 2e-5);
    }
  }
}

}  // namespace
}  // namespace memtrain
