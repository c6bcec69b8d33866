#include "optim/coap.h"

#include <lapacke.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/cpu/gemm.h"
#include "core/philox.h"
#include "core/status.h"
#include "optim/adamw.h"

namespace memtrain::optim {
namespace {
constexpr uint64_t kOmegaSeed = 3407;  // the reference's fixed projector seed, not the run's
constexpr double kProjectionRate = 0.1, kProjectionMaxNorm = 1.0;  // its hard-coded SGD step on P

// P (r x s) = the top r right singular vectors of Q^T X, Q = qr(X Omega): COAP's one-pass randomized SVD.
absl::Status rand_svd(const float* X, int64_t L, int64_t s, int64_t r, const float* omega, float* P,
                      ThreadPool& pool) {
  std::vector<float> Y(L * r), tau(r), B(r * s), sv(r), u(r * r);
  cpu::sgemm(false, false, L, r, s, 1.0f, X, s, omega, r, 0.0f, Y.data(), r, pool);
  const auto lr = [](int64_t v) { return static_cast<lapack_int>(v); };
  lapack_int info = LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, lr(L), lr(r), Y.data(), lr(r), tau.data());
  if (info == 0) info = LAPACKE_sorgqr(LAPACK_ROW_MAJOR, lr(L), lr(r), lr(r), Y.data(), lr(r), tau.data());
  if (info != 0) return absl::InternalError(absl::StrCat("QR of a ", L, " x ", r, " sketch failed: info ", info));
  cpu::sgemm(true, false, r, s, L, 1.0f, Y.data(), r, X, s, 0.0f, B.data(), s, pool);
  info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', lr(r), lr(s), B.data(), lr(s), sv.data(), u.data(), lr(r), P, lr(s));
  if (info != 0) return absl::InternalError(absl::StrCat("SVD of a ", r, " x ", s, " matrix failed: info ", info));
  return absl::OkStatus();
}

// X = the gradient as L x s: G itself when the projection acts on columns, else G^T (copied into `storage`).
const float* oriented(const float* G, const MatrixProjection& mp, std::vector<float>& storage) {
  if (!mp.on_rows()) return G;
  storage.resize(mp.m * mp.n);
  for (int64_t i = 0; i < mp.m; ++i)
    for (int64_t j = 0; j < mp.n; ++j) storage[j * mp.m + i] = G[i * mp.n + j];
  return storage.data();
}
}  // namespace

MatrixProjection coap_projection(const Shape& shape, const OptimConfig& cfg) {
  MatrixProjection mp{shape[0], shape[1], std::min(cfg.rank, std::min(shape[0], shape[1]))};
  mp.columns_if_square = true;
  return mp;
}

double coap_projection_loss(const float* X, const float* P, const float* M, int64_t L, int64_t s, int64_t r,
                            std::vector<double>* grad) {
  ThreadPool& pool = ThreadPool::global();
  // The reconstruction error E = X P^T P - X and its mean square A.
  std::vector<float> T(L * r), E(X, X + L * s);
  cpu::sgemm(false, true, L, r, s, 1.0f, X, s, P, s, 0.0f, T.data(), r, pool);
  cpu::sgemm(false, false, L, s, r, 1.0f, T.data(), r, P, s, -1.0f, E.data(), s, pool);
  double A = 0;
  for (float e : E) A += static_cast<double>(e) * e;
  A /= static_cast<double>(L * s);
  // Row c's cosine between (M P)_c and X_c, and dcos_c / d(M P)_c into D (over MP's storage).
  std::vector<float> D(L * s);
  cpu::sgemm(false, false, L, s, r, 1.0f, M, r, P, s, 0.0f, D.data(), s, pool);
  double cos_sum = 0;
  for (int64_t c = 0; c < L; ++c) {
    float* a = D.data() + c * s;
    const float* x = X + c * s;
    double dot = 0, aa = 0, xx = 0;
    for (int64_t j = 0; j < s; ++j) {
      dot += static_cast<double>(a[j]) * x[j];
      aa += static_cast<double>(a[j]) * a[j];
      xx += static_cast<double>(x[j]) * x[j];
    }
    const double norms = std::sqrt(aa * xx);
    const double cos = norms > 0 ? dot / norms : 0.0;
    cos_sum += cos;
    for (int64_t j = 0; j < s; ++j)
      a[j] = norms > 0 ? static_cast<float>(x[j] / norms - cos * a[j] / aa) : 0.0f;
  }
  const double B = 1 - cos_sum / static_cast<double>(L);
  if (grad != nullptr) {
    // dA/dP = 2 / (L s) * ((E P^T)^T X + T^T E); dB/dP = -1 / L * M^T D.
    std::vector<float> U(L * r), gA(r * s), gB(r * s);
    cpu::sgemm(false, true, L, r, s, 1.0f, E.data(), s, P, s, 0.0f, U.data(), r, pool);
    cpu::sgemm(true, false, r, s, L, 1.0f, U.data(), r, X, s, 0.0f, gA.data(), s, pool);
    cpu::sgemm(true, false, r, s, L, 1.0f, T.data(), r, E.data(), s, 1.0f, gA.data(), s, pool);
    cpu::sgemm(true, false, r, s, L, 1.0f, M, r, D.data(), s, 0.0f, gB.data(), s, pool);
    grad->resize(r * s);
    const double a_scale = 2.0 / static_cast<double>(L * s), b_scale = -1.0 / static_cast<double>(L);
    for (int64_t i = 0; i < r * s; ++i) (*grad)[i] = B * a_scale * gA[i] + A * b_scale * gB[i];
  }
  return A * B;
}

int64_t Coap::state_bytes(const OptimTarget& t, const OptimConfig& cfg) {
  if (!projects_matrix(*t.param)) return 8 * t.n;
  const MatrixProjection mp = coap_projection(t.param->local_shape, cfg);
  return 4 * mp.r * mp.small() + 8 * mp.projected_numel();
}

absl::StatusOr<std::unique_ptr<Optimizer>> Coap::create(std::vector<OptimTarget> targets, const OptimConfig& cfg) {
  std::unique_ptr<Coap> opt(new Coap(std::move(targets), cfg));
  for (const OptimTarget& t : opt->targets_) {
    State s;
    int64_t size = t.n;
    if (projects_matrix(*t.param)) {
      if (t.offset != 0 || t.n != shape_numel(t.param->local_shape)) {
        return config_error("optim.name", absl::StrCat("coap_adamw projects whole matrices, but this rank updates "
                                                       "a piece of ", t.param->name));
      }
      s.mp = coap_projection(t.param->local_shape, cfg);
      size = s.mp.projected_numel();
      MEMTRAIN_ASSIGN_OR_RETURN(s.proj, Tensor::zeros({s.mp.r * s.mp.small()}, DType::kF32,
                                                      MemCategory::kOptimizerState));
      opt->projected_.resize(std::max<size_t>(opt->projected_.size(), size));
    }
    MEMTRAIN_ASSIGN_OR_RETURN(s.mom1, Tensor::zeros({size}, DType::kF32, MemCategory::kOptimizerState));
    MEMTRAIN_ASSIGN_OR_RETURN(s.mom2, Tensor::zeros({size}, DType::kF32, MemCategory::kOptimizerState));
    opt->states_.push_back(std::move(s));
  }
  return std::unique_ptr<Optimizer>(std::move(opt));
}

absl::Status Coap::update_projection(const OptimTarget& t, State& s, int64_t k) {
  const MatrixProjection& mp = s.mp;
  const int64_t T_u = cfg_.coap_update_interval;
  if (k != 0 && k % T_u != 0) return absl::OkStatus();
  const int64_t L = mp.large(), n = mp.small(), r = mp.r;
  ThreadPool& pool = ThreadPool::global();
  std::vector<float> x_storage;
  const float* X = oriented(t.grad, mp, x_storage);
  float* P = s.proj.f32();
  if (k == 0 || k % (T_u * cfg_.coap_reproject_factor) == 0) {
    std::vector<float> omega(n * r), fresh(r * n);
    if (k == 0) {
      philox_normal(philox_key(kOmegaSeed, "coap.omega"), 0, n * r, 0.0f, 1.0f, omega.data());
    } else {
      for (int64_t i = 0; i < r; ++i)
        for (int64_t j = 0; j < n; ++j) omega[j * r + i] = P[i * n + j];
    }
    MEMTRAIN_RETURN_IF_ERROR(rand_svd(X, L, n, r, omega.data(), fresh.data(), pool));
    for (int64_t i = 0; i < r; ++i) {
      float* row = fresh.data() + i * n;
      double agree = 0;  // the first P: its largest element's sign; a recalibrated row: the old row's direction
      if (k == 0) {
        agree = *std::max_element(row, row + n, [](float a, float b) { return std::abs(a) < std::abs(b); });
      } else {
        for (int64_t j = 0; j < n; ++j) agree += static_cast<double>(row[j]) * P[i * n + j];
      }
      if (agree < 0) std::transform(row, row + n, row, [](float v) { return -v; });
    }
    std::copy(fresh.begin(), fresh.end(), P);
    return absl::OkStatus();
  }
  // The correlation-aware step, with the first moment as L x r (R's layout transposed when P acts on rows).
  std::vector<float> m_storage;
  const float* M = s.mom1.f32();
  if (mp.on_rows()) {
    m_storage.resize(L * r);
    for (int64_t i = 0; i < r; ++i)
      for (int64_t c = 0; c < L; ++c) m_storage[c * r + i] = M[i * L + c];
    M = m_storage.data();
  }
  std::vector<double> grad;
  coap_projection_loss(X, P, M, L, n, r, &grad);
  double norm = 0;
  for (double g : grad) norm += g * g;
  norm = std::sqrt(norm);
  const double clip = norm > kProjectionMaxNorm ? kProjectionMaxNorm / (norm + 1e-6) : 1.0;  // clip_grad_norm_
  for (int64_t i = 0; i < r * n; ++i) P[i] = static_cast<float>(P[i] - kProjectionRate * clip * grad[i]);
  return absl::OkStatus();
}

absl::Status Coap::step(double lr) {
  const int64_t k = step_++;  // COAP's schedule reads the count before this step
  for (size_t i = 0; i < targets_.size(); ++i) {
    const OptimTarget& t = targets_[i];
    State& s = states_[i];
    if (s.mp.r == 0) {
      adamw_update(t, s.mom1.f32(), s.mom2.f32(), cfg_, lr, step_);
      continue;
    }
    MEMTRAIN_RETURN_IF_ERROR(update_projection(t, s, k));
    projected_adamw_step(t, s.mp, s.proj.f32(), s.mom1.f32(), s.mom2.f32(), projected_.data(), cfg_, lr, step_,
                         cfg_.coap_scale);
  }
  return absl::OkStatus();
}

std::vector<float> Coap::projection(size_t i) const {
  const State& s = states_[i];
  if (s.mp.r == 0) return {};
  return std::vector<float>(s.proj.f32(), s.proj.f32() + s.mp.r * s.mp.small());
}

std::vector<CheckpointArraySpec> Coap::checkpoint_layout(const model::Param& p, const OptimConfig& cfg) {
  if (!projects_matrix(p)) return {{"mom1", p.shape}, {"mom2", p.shape}};
  const MatrixProjection mp = coap_projection(p.shape, cfg);
  return {{"proj", {mp.r, mp.small()}}, {"mom1", {mp.projected_numel()}}, {"mom2", {mp.projected_numel()}}};
}

absl::StatusOr<Optimizer::CheckpointStates> Coap::checkpoint_state() {
  CheckpointStates out;
  for (size_t i = 0; i < targets_.size(); ++i) {
    State& s = states_[i];
    const bool projected = s.mp.r > 0;
    if (projected) out.arrays.push_back({targets_[i], "proj", true, DType::kF32, s.proj.f32()});
    out.arrays.push_back({targets_[i], "mom1", projected, DType::kF32, s.mom1.f32()});
    out.arrays.push_back({targets_[i], "mom2", projected, DType::kF32, s.mom2.f32()});
  }
  return out;
}

}  // namespace memtrain::optim
