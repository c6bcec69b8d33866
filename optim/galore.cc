#include "optim/galore.h"

#include <lapacke.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "optim/adamw.h"

namespace memtrain::optim {

absl::Status top_singular_vectors(const float* G, const MatrixProjection& mp, float* P) {
  const int64_t m = mp.m, n = mp.n, k = std::min(m, n);
  std::vector<float> a(G, G + m * n), s(k), u(m * k), vt(k * n);  // sgesdd overwrites its input
  const lapack_int info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', static_cast<lapack_int>(m),
                                         static_cast<lapack_int>(n), a.data(), static_cast<lapack_int>(n), s.data(),
                                         u.data(), static_cast<lapack_int>(k), vt.data(), static_cast<lapack_int>(n));
  if (info != 0) return absl::InternalError(absl::StrCat("SVD of a ", m, " x ", n, " gradient failed: info ", info));
  const int64_t len = mp.small();
  for (int64_t row = 0; row < mp.r; ++row) {
    float* p = P + row * len;
    for (int64_t i = 0; i < len; ++i) p[i] = mp.on_rows() ? u[i * k + row] : vt[row * n + i];
    const float* big = std::max_element(p, p + len, [](float x, float y) { return std::abs(x) < std::abs(y); });
    if (*big < 0) std::transform(p, p + len, p, [](float x) { return -x; });
  }
  return absl::OkStatus();
}

int64_t GaLore::state_bytes(const OptimTarget& t, const OptimConfig& cfg) {
  if (!projects_matrix(*t.param)) return 8 * t.n;
  const Shape& s = t.param->local_shape;
  const MatrixProjection mp{s[0], s[1], std::min(cfg.rank, std::min(s[0], s[1]))};
  const int64_t proj = cfg.galore_int8_projection ? mp.r * mp.small() + 4 * mp.r : 4 * mp.r * mp.small();
  return proj + 8 * mp.projected_numel();
}

absl::StatusOr<std::unique_ptr<Optimizer>> GaLore::create(std::vector<OptimTarget> targets, const OptimConfig& cfg) {
  std::unique_ptr<GaLore> opt(new GaLore(std::move(targets), cfg));
  for (const OptimTarget& t : opt->targets_) {
    State s;
    int64_t size = t.n;
    if (projects_matrix(*t.param)) {
      if (t.offset != 0 || t.n != shape_numel(t.param->local_shape)) {
        return config_error("optim.name", absl::StrCat("galore_adamw projects whole matrices, but this rank updates "
                                                       "a piece of ", t.param->name));
      }
      const int64_t m = t.param->local_shape[0], n = t.param->local_shape[1];
      s.mp = MatrixProjection{m, n, std::min(cfg.rank, std::min(m, n))};
      size = s.mp.projected_numel();
      const int64_t proj = s.mp.r * s.mp.small();
      if (cfg.galore_int8_projection) {
        MEMTRAIN_ASSIGN_OR_RETURN(s.proj, Tensor::zeros({proj}, DType::kI8, MemCategory::kOptimizerState));
        MEMTRAIN_ASSIGN_OR_RETURN(s.proj_absmax, Tensor::zeros({s.mp.r}, DType::kF32, MemCategory::kOptimizerState));
      } else {
        MEMTRAIN_ASSIGN_OR_RETURN(s.proj, Tensor::zeros({proj}, DType::kF32, MemCategory::kOptimizerState));
      }
      opt->proj_.resize(std::max<size_t>(opt->proj_.size(), proj));
      opt->projected_.resize(std::max<size_t>(opt->projected_.size(), size));
    }
    MEMTRAIN_ASSIGN_OR_RETURN(s.mom1, Tensor::zeros({size}, DType::kF32, MemCategory::kOptimizerState));
    MEMTRAIN_ASSIGN_OR_RETURN(s.mom2, Tensor::zeros({size}, DType::kF32, MemCategory::kOptimizerState));
    opt->states_.push_back(std::move(s));
  }
  return std::unique_ptr<Optimizer>(std::move(opt));
}

absl::Status GaLore::step(double lr) {
  ++step_;
  for (size_t i = 0; i < targets_.size(); ++i) {
    const OptimTarget& t = targets_[i];
    State& s = states_[i];
    if (s.mp.r > 0) {
      MEMTRAIN_RETURN_IF_ERROR(step_matrix(t, s, lr));
      continue;
    }
    adamw_update(t, s.mom1.f32(), s.mom2.f32(), cfg_, lr, step_);
  }
  return absl::OkStatus();
}

void GaLore::store_projection(State& s, const float* P) {
  const int64_t len = s.mp.small();
  if (!cfg_.galore_int8_projection) {
    std::copy(P, P + s.mp.r * len, s.proj.f32());
    return;
  }
  int8_t* q = s.proj.data<int8_t>();
  for (int64_t row = 0; row < s.mp.r; ++row) {
    const float* p = P + row * len;
    float absmax = 0;
    for (int64_t i = 0; i < len; ++i) absmax = std::max(absmax, std::abs(p[i]));
    s.proj_absmax.f32()[row] = absmax;
    const float inv = absmax > 0 ? 127.0f / absmax : 0.0f;
    for (int64_t i = 0; i < len; ++i) q[row * len + i] = static_cast<int8_t>(std::lround(p[i] * inv));
  }
}

void GaLore::load_projection(const State& s, float* P) const {
  const int64_t len = s.mp.small();
  if (!cfg_.galore_int8_projection) {
    std::copy(s.proj.f32(), s.proj.f32() + s.mp.r * len, P);
    return;
  }
  const int8_t* q = s.proj.data<int8_t>();
  for (int64_t row = 0; row < s.mp.r; ++row) {
    const float scale = s.proj_absmax.f32()[row] / 127.0f;
    for (int64_t i = 0; i < len; ++i) P[row * len + i] = q[row * len + i] * scale;
  }
}

std::vector<float> GaLore::projection(size_t i) const {
  const State& s = states_[i];
  if (s.mp.r == 0) return {};
  std::vector<float> P(s.mp.r * s.mp.small());
  load_projection(s, P.data());
  return P;
}

absl::Status GaLore::step_matrix(const OptimTarget& t, State& s, double lr) {
  const MatrixProjection& mp = s.mp;
  float* P = proj_.data();
  float* R = projected_.data();
  if ((step_ - 1) % cfg_.update_proj_gap == 0) {
    MEMTRAIN_RETURN_IF_ERROR(top_singular_vectors(t.grad, mp, P));
    store_projection(s, P);
  }
  // The projection as stored: fp32 in place, int8 dequantized into the scratch.
  const float* used = P;
  if (cfg_.galore_int8_projection) {
    load_projection(s, P);
  } else {
    used = s.proj.f32();
  }
  projected_adamw_step(t, mp, used, s.mom1.f32(), s.mom2.f32(), R, cfg_, lr, step_, cfg_.galore_scale);
  return absl::OkStatus();
}

std::vector<CheckpointArraySpec> GaLore::checkpoint_layout(const model::Param& p, const OptimConfig& cfg) {
  if (!projects_matrix(p)) return {{"mom1", p.shape}, {"mom2", p.shape}};
  const MatrixProjection mp{p.shape[0], p.shape[1], std::min(cfg.rank, std::min(p.shape[0], p.shape[1]))};
  std::vector<CheckpointArraySpec> out = {
      {"proj", {mp.r, mp.small()}, cfg.galore_int8_projection ? DType::kI8 : DType::kF32}};
  if (cfg.galore_int8_projection) out.push_back({"proj_absmax", {mp.r}});
  out.push_back({"mom1", {mp.projected_numel()}});
  out.push_back({"mom2", {mp.projected_numel()}});
  return out;
}

absl::StatusOr<Optimizer::CheckpointStates> GaLore::checkpoint_state() {
  CheckpointStates out;
  for (size_t i = 0; i < targets_.size(); ++i) {
    State& s = states_[i];
    const bool projected = s.mp.r > 0;
    if (projected) {
      out.arrays.push_back({targets_[i], "proj", true, s.proj.dtype(), s.proj.raw()});
      if (cfg_.galore_int8_projection)
        out.arrays.push_back({targets_[i], "proj_absmax", true, DType::kF32, s.proj_absmax.f32()});
    }
    out.arrays.push_back({targets_[i], "mom1", projected, DType::kF32, s.mom1.f32()});
    out.arrays.push_back({targets_[i], "mom2", projected, DType::kF32, s.mom2.f32()});
  }
  return out;
}

}  // namespace memtrain::optim
