// A weight matrix's gradient G (m x n, row-major) seen through a projection P (r x the smaller side, row-major),
// the low-rank optimizers' common step (GaLore, APOLLO): when m <= n, P acts on the rows (R = P G, r x n, and back
// P^T N); otherwise on the columns (R = G P^T, m x r, and back N P). R keeps G's larger side, so its "channels"
// (the larger side's vectors: columns of R when m <= n, rows otherwise) are G's.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"
#include "model/params.h"
#include "optim/optimizer.h"

namespace memtrain::optim {

// Whether GaLore and APOLLO project `p`: a 2-D weight matrix (others take plain AdamW).
inline bool projects_matrix(const model::Param& p) {
  return p.kind == model::ParamKind::kWeight && p.local_shape.size() == 2;
}

struct MatrixProjection {
  int64_t m = 0, n = 0, r = 0;  // r <= min(m, n)
  bool columns_if_square = false;  // a square matrix's projection acts on its columns (COAP's choice), not its rows

  bool on_rows() const { return columns_if_square ? m < n : m <= n; }
  int64_t small() const { return on_rows() ? m : n; }
  int64_t large() const { return on_rows() ? n : m; }
  int64_t projected_numel() const { return r * large(); }
  // R's element (channel c, k < r), as an index into R.
  int64_t at(int64_t c, int64_t k) const { return on_rows() ? k * n + c : c * r + k; }

  // R = the projection of G (projected_numel() floats).
  void project(const float* P, const float* G, float* R, ThreadPool& pool) const;
  // out = alpha * back(N) + beta * out, back(N) being m x n.
  void project_back(const float* P, const float* N, float alpha, float beta, float* out, ThreadPool& pool) const;
};

// AdamW in the projected space, galore_torch's and COAP's step: R = project(P, G) (into the scratch R); M and V
// updated from it; W -= step_size * scale * back(M / (sqrt(V) + eps)), step_size = lr sqrt(1 - b2^t) / (1 - b1^t);
// then W *= 1 - lr * weight_decay where the parameter decays. t: this step's count, from 1.
void projected_adamw_step(const OptimTarget& t, const MatrixProjection& mp, const float* P, float* M, float* V,
                          float* R, const OptimConfig& cfg, double lr, int64_t step, double scale);

}  // namespace memtrain::optim
