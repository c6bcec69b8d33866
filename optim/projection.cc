#include "optim/projection.h"

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

}  // namespace memtrain::optim
