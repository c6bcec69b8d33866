// Text generation from a trained model: temperature and top-k sampling, drawn from Philox so a seed reproduces a
// sample exactly.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/model.h"

namespace memtrain::trainer {

struct SampleOptions {
  int64_t tokens = 200;
  double temperature = 0.8;
  int64_t top_k = 40;  // 0: the whole vocabulary
  uint64_t seed = 0;
  int64_t index = 0;   // which sample of a run: selects the Philox stream
};

// Extends `prompt` (non-empty) by opts.tokens tokens; the context is cropped to model.block_size.
absl::StatusOr<std::vector<int32_t>> generate(model::Model& model, std::vector<int32_t> prompt, const SampleOptions& opts);

// Picks a token from one row of logits (V): softmax(logits / temperature) restricted to the top_k largest, using
// u in [0, 1). Ties in the top-k cut keep the lower ids.
int32_t sample_token(const float* logits, int64_t V, double temperature, int64_t top_k, double u);

}  // namespace memtrain::trainer
