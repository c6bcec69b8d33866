// What the optimizer tests share when they compare an update with a float64 re-implementation of its formulas.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "optim/optim_config.h"

namespace memtrain::optim::testing {

// ||value - reference|| / ||reference|| over a fp32 tensor's elements.
inline double relative_difference(const Tensor& value, const std::vector<double>& reference) {
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < value.numel(); ++i) {
    diff += std::pow(value.f32()[i] - reference[i], 2);
    norm += reference[i] * reference[i];
  }
  return std::sqrt(diff / norm);
}

// One tensor under AdamW (decoupled weight decay, bias correction) in float64; reset() starts the state afresh.
struct AdamWReference {
  std::vector<double> w, m, v;
  int64_t t = 0;
  void step(const float* g, double lr, const OptimConfig& c, bool decay) {
    ++t;
    for (size_t i = 0; i < w.size(); ++i) {
      if (decay) w[i] *= 1 - lr * c.weight_decay;
      m[i] = c.beta1 * m[i] + (1 - c.beta1) * g[i];
      v[i] = c.beta2 * v[i] + (1 - c.beta2) * g[i] * g[i];
      const double mh = m[i] / (1 - std::pow(c.beta1, t)), vh = v[i] / (1 - std::pow(c.beta2, t));
      w[i] -= lr * mh / (std::sqrt(vh) + c.eps);
    }
  }
  void reset() {
    std::fill(m.begin(), m.end(), 0.0);
    std::fill(v.begin(), v.end(), 0.0);
    t = 0;
  }
};

}  // namespace memtrain::optim::testing
