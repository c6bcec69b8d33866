#include "trainer/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/philox.h"

namespace memtrain::trainer {

int32_t sample_token(const float* logits, int64_t V, double temperature, int64_t top_k, double u) {
  std::vector<int32_t> ids(V);
  std::iota(ids.begin(), ids.end(), 0);
  const int64_t k = top_k > 0 ? std::min(top_k, V) : V;
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  const double top = logits[ids[0]];
  std::vector<double> w(k);
  double total = 0;
  for (int64_t i = 0; i < k; ++i) total += w[i] = std::exp((logits[ids[i]] - top) / temperature);
  double acc = 0;
  for (int64_t i = 0; i < k; ++i) {
    acc += w[i] / total;
    if (u < acc) return ids[i];
  }
  return ids[k - 1];
}

absl::StatusOr<std::vector<int32_t>> generate(model::Model& model, std::vector<int32_t> prompt,
                                              const SampleOptions& opts) {
  if (prompt.empty()) return absl::InvalidArgumentError("generate: empty prompt");
  const int64_t ctx = model.config().block_size, V = model.config().vocab_size;
  const PhiloxKey key = philox_key(opts.seed, absl::StrCat("sample.", opts.index));
  for (int64_t i = 0; i < opts.tokens; ++i) {
    const int64_t T = std::min<int64_t>(ctx, static_cast<int64_t>(prompt.size()));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor tokens, Tensor::empty({1, T}, DType::kI32, MemCategory::kActivations));
    std::copy(prompt.end() - T, prompt.end(), tokens.i32());
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor logits, model.last_logits(tokens));
    prompt.push_back(sample_token(logits.f32(), V, opts.temperature, opts.top_k, philox_unit_double(key, i)));
  }
  return prompt;
}

}  // namespace memtrain::trainer
