// Sampling: top-k and temperature against the softmax computed directly in double.
#include "trainer/generate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace memtrain::trainer {
namespace {

// The id whose cumulative probability first passes u, over the k largest logits (ids ascending among ties).
int32_t reference(const std::vector<float>& logits, double temperature, int64_t k, double u) {
  std::vector<int32_t> ids(logits.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  ids.resize(k);
  double z = 0;
  for (int32_t i : ids) z += std::exp(logits[i] / temperature);
  double acc = 0;
  for (int32_t i : ids) {
    acc += std::exp(logits[i] / temperature) / z;
    if (u < acc) return i;
  }
  return ids.back();
}

TEST(SampleToken, MatchesTheTruncatedSoftmax) {
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 2.0f, 0.5f, 1.5f, -3.0f};
  for (double t : {0.5, 1.0, 2.0})
    for (int64_t k : {1, 2, 3, 7})
      for (double u = 0.005; u < 1; u += 0.01)
        ASSERT_EQ(sample_token(logits.data(), 7, t, k, u), reference(logits, t, k, u)) << t << " " << k << " " << u;
  EXPECT_EQ(sample_token(logits.data(), 7, 1.0, 1, 0.99), 1);  // top-1 is the first of the tied maxima
  EXPECT_EQ(sample_token(logits.data(), 7, 1.0, 0, 0.999999), reference(logits, 1.0, 7, 0.999999));  // 0 = all
}

}  // namespace
}  // namespace memtrain::trainer
