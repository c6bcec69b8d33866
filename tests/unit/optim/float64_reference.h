// What the optimizer tests share when they compare an update with a float64 re-implementation of its formulas.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/tensor.h"

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

}  // namespace memtrain::optim::testing
