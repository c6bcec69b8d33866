#include "optim/projection.h"

#include <cmath>

#include "core/cpu/gemm.h"

namespace memtrain::optim {

void MatrixProjection::project(const float* P, const float* G, float* R, ThreadPool& pool) const {
  if (on_rows()) {
    cpu::sgemm(false, false, r, n, m, 1.0f, P, m, G, n, 0.0f, R, n, pool);  // (r x m)(m x n)
  } else {
    cpu::sgemm(false, true, m, r, n, 1.0f, G, n, P, n, 0.0f, R, r, pool);  // (m x n)(n x r)
  }
}

void MatrixProjection::project_back(const float* P, const float* N, float alpha, float beta, float* out,
                                    ThreadPool& pool) const {
  if (on_rows()) {
    cpu::sgemm(true, false, m, n, r, alpha, P, m, N, n, beta, out, n, pool);  // (m x r)(r x n)
  } else {
    cpu::sgemm(false, false, m, n, r, alpha, N, r, P, n, beta, out, n, pool);  // (m x r)(r x n)
  }
}

void projected_adamw_step(const OptimTarget& t, const MatrixProjection& mp, const float* P, float* M, float* V,
                          float* R, const OptimConfig& cfg, double lr, int64_t step, double scale) {
  ThreadPool& pool = ThreadPool::global();
  mp.project(P, t.grad, R, pool);
  // R becomes N = m / (sqrt(v) + eps), bias corrections folded into the step size.
  const float b1 = static_cast<float>(cfg.beta1), b2 = static_cast<float>(cfg.beta2);
  const float eps = static_cast<float>(cfg.eps);
  for (int64_t i = 0; i < mp.projected_numel(); ++i) {
    M[i] = b1 * M[i] + (1 - b1) * R[i];
    V[i] = b2 * V[i] + (1 - b2) * R[i] * R[i];
    R[i] = M[i] / (std::sqrt(V[i]) + eps);
  }
  const double steps = static_cast<double>(step);
  const double step_size = lr * std::sqrt(1 - std::pow(cfg.beta2, steps)) / (1 - std::pow(cfg.beta1, steps));
  // W -= step_size * scale * back(N), then the decay of the updated weight (galore_torch's order).
  mp.project_back(P, R, static_cast<float>(-step_size * scale), 1.0f, t.value, pool);
  if (decays(*t.param, cfg) && cfg.weight_decay > 0) {
    const float keep = static_cast<float>(1 - lr * cfg.weight_decay);
    for (int64_t i = 0; i < mp.m * mp.n; ++i) t.value[i] *= keep;
  }
}

}  // namespace memtrain::optim
