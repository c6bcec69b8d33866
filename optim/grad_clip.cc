#include "optim/grad_clip.h"

#include <cmath>

#include "core/cpu/elementwise.h"

namespace memtrain::optim {

double global_grad_norm(const model::ParamSet& params) {
  double sum = 0;
  for (const auto& p : params.all()) sum += cpu::sum_squares(p->grad.f32(), p->grad.numel(), ThreadPool::global());
  return std::sqrt(sum);
}

double clip_grad_norm(model::ParamSet& params, double max_norm) {
  const double norm = global_grad_norm(params);
  const double coef = clip_coefficient(norm, max_norm);
  if (coef < 1.0) {
    for (const auto& p : params.all())
      cpu::scale_inplace(p->grad.f32(), static_cast<float>(coef), p->grad.numel(), ThreadPool::global());
  }
  return norm;
}

double clip_coefficient(double norm, double max_norm) {
  if (max_norm <= 0) return 1.0;
  const double coef = max_norm / (norm + 1e-6);
  return coef < 1.0 ? coef : 1.0;
}

}  // namespace memtrain::optim
