#include "optim/apollo.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "optim/adamw.h"

namespace memtrain::optim {
namespace {

int64_t rank_of(const OptimConfig& cfg, bool mini) { return mini ? 1 : cfg.rank; }
double scale_of(const OptimConfig& cfg, bool mini) {
  return cfg.apollo_scale > 0 ? cfg.apollo_scale : (mini ? 128.0 : 1.0);
}

}  // namespace

void apollo_projection(uint64_t seed, const std::string& param, int64_t period, int64_t rows, int64_t cols,
                       float* out) {
  philox_normal(philox_key(seed, absl::StrCat("apollo/", param, "/", period)), 0, rows * cols, 0.0f,
                static_cast<float>(1.0 / std::sqrt(static_cast<double>(rows))), out);
}

int64_t Apollo::state_bytes(const OptimTarget& t, const OptimConfig& cfg, bool mini) {
  if (!projects_matrix(*t.param)) return 8 * t.n;
  const Shape& s = t.param->local_shape;
  const int64_t r = std::min(rank_of(cfg, mini), std::min(s[0], s[1]));
  return 8 * r * std::max(s[0], s[1]);
}

absl::StatusOr<std::unique_ptr<Optimizer>> Apollo::create(std::vector<OptimTarget> targets, const OptimConfig& cfg,
                                                           bool mini, uint64_t seed) {
  std::unique_ptr<Apollo> opt(new Apollo(std::move(targets), cfg, mini, seed));
  for (const OptimTarget& t : opt->targets_) {
    State s;
    int64_t size = t.n;
    if (projects_matrix(*t.param)) {
      if (t.offset != 0 || t.n != shape_numel(t.param->local_shape)) {
        return config_error("optim.name", absl::StrCat(cfg.name, " projects whole matrices, but this rank updates a "
                                                       "piece of ", t.param->name, " (optim/matrix_owners gives it whole)"));
      }
      const int64_t m = t.param->local_shape[0], n = t.param->local_shape[1];
      s.mp = MatrixProjection{m, n, std::min(rank_of(cfg, mini), std::min(m, n))};
      size = s.mp.projected_numel();
      opt->proj_.resize(std::max<size_t>(opt->proj_.size(), s.mp.r * s.mp.small()));
      opt->projected_.resize(std::max<size_t>(opt->projected_.size(), size));
    }
    MEMTRAIN_ASSIGN_OR_RETURN(s.mom1, Tensor::zeros({size}, DType::kF32, MemCategory::kOptimizerState));
    MEMTRAIN_ASSIGN_OR_RETURN(s.mom2, Tensor::zeros({size}, DType::kF32, MemCategory::kOptimizerState));
    opt->states_.push_back(std::move(s));
  }
  opt->adam_.resize(opt->projected_.size());
  return std::unique_ptr<Optimizer>(std::move(opt));
}

absl::Status Apollo::step(double lr) {
  ++step_;
  for (size_t i = 0; i < targets_.size(); ++i) {
    const OptimTarget& t = targets_[i];
    State& s = states_[i];
    if (s.mp.r > 0) {
      step_matrix(t, s, lr);
      continue;
    }
    adamw_update(t, s.mom1.f32(), s.mom2.f32(), cfg_, lr, step_);
  }
  return absl::OkStatus();
}

void Apollo::step_matrix(const OptimTarget& t, State& s, double lr) {
  const MatrixProjection& mp = s.mp;
  ThreadPool& pool = ThreadPool::global();
  float* P = proj_.data();
  float* R = projected_.data();
  float* A = adam_.data();
  apollo_projection(seed_, t.param->name, (step_ - 1) / cfg_.update_proj_gap, mp.r, mp.small(), P);
  mp.project(P, t.grad, R, pool);
  // AdamW moments of R and N = m / (sqrt(v) + eps); the bias corrections go into the step size, as in the
  // reference implementation.
  const float b1 = static_cast<float>(cfg_.beta1), b2 = static_cast<float>(cfg_.beta2);
  const float eps = static_cast<float>(cfg_.eps);
  float* M = s.mom1.f32();
  float* V = s.mom2.f32();
  const int64_t size = mp.projected_numel();
  for (int64_t i = 0; i < size; ++i) {
    M[i] = b1 * M[i] + (1 - b1) * R[i];
    V[i] = b2 * V[i] + (1 - b2) * R[i] * R[i];
    A[i] = M[i] / (std::sqrt(V[i]) + eps);
  }
  // Per channel ||N|| / ||R||; APOLLO-Mini takes the ratio of the whole tensor's norms.
  const int64_t channels = mp.large();
  std::vector<double> a_sq(channels), p_sq(channels), channel_scale(channels);
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t k = 0; k < mp.r; ++k) {
      const int64_t i = mp.at(c, k);
      a_sq[c] += static_cast<double>(A[i]) * A[i];
      p_sq[c] += static_cast<double>(R[i]) * R[i];
    }
  }
  double adam_all = 0, proj_all = 0;
  for (int64_t c = 0; c < channels; ++c) {
    channel_scale[c] = std::sqrt(a_sq[c]) / (std::sqrt(p_sq[c]) + 1e-8);
    adam_all += a_sq[c];
    proj_all += p_sq[c];
  }
  if (mini_) std::fill(channel_scale.begin(), channel_scale.end(), std::sqrt(adam_all) / (std::sqrt(proj_all) + 1e-8));
  // The scaled full-rank gradient's norm, limited to 1.01x the last step's.
  const float* G = t.grad;
  // G's element (i, j) belongs to channel j when P acts on the rows, else i.
  auto scale_at = [&](int64_t i, int64_t j) { return channel_scale[mp.on_rows() ? j : i]; };
  double norm_sq = 0;
  for (int64_t i = 0; i < mp.m; ++i)
    for (int64_t j = 0; j < mp.n; ++j) norm_sq += std::pow(G[i * mp.n + j] * scale_at(i, j), 2);
  const double norm = std::sqrt(norm_sq);
  double limit = 1.0;
  if (s.last_norm >= 0) limit = std::max(norm / (s.last_norm + 1e-8), cfg_.apollo_norm_growth) / cfg_.apollo_norm_growth;
  s.last_norm = norm / limit;
  // W -= lr sqrt(1 - b2^t) / (1 - b1^t) * sqrt(scale) * G~, then the decay of the updated weight.
  const double steps = static_cast<double>(step_);
  const double step_size = lr * std::sqrt(1 - std::pow(cfg_.beta2, steps)) / (1 - std::pow(cfg_.beta1, steps));
  const double step = step_size * std::sqrt(scale_of(cfg_, mini_)) / limit;
  const double keep = decays(*t.param, cfg_) ? 1 - lr * cfg_.weight_decay : 1.0;
  float* W = t.value;
  for (int64_t i = 0; i < mp.m; ++i) {
    for (int64_t j = 0; j < mp.n; ++j) {
      float& w = W[i * mp.n + j];
      w = static_cast<float>((w - step * scale_at(i, j) * G[i * mp.n + j]) * keep);
    }
  }
}

std::vector<CheckpointArraySpec> Apollo::checkpoint_layout(const model::Param& p, const OptimConfig& cfg, bool mini) {
  if (!projects_matrix(p)) return {{"mom1", p.shape}, {"mom2", p.shape}};
  const MatrixProjection mp{p.shape[0], p.shape[1], std::min(rank_of(cfg, mini), std::min(p.shape[0], p.shape[1]))};
  return {{"mom1", {mp.projected_numel()}}, {"mom2", {mp.projected_numel()}}, {"last_norm", {8}, DType::kU8}};
}

absl::StatusOr<Optimizer::CheckpointStates> Apollo::checkpoint_state() {
  CheckpointStates out;
  for (size_t i = 0; i < targets_.size(); ++i) {
    State& s = states_[i];
    const bool projected = s.mp.r > 0;
    out.arrays.push_back({targets_[i], "mom1", projected, DType::kF32, s.mom1.f32()});
    out.arrays.push_back({targets_[i], "mom2", projected, DType::kF32, s.mom2.f32()});
    if (projected) out.arrays.push_back({targets_[i], "last_norm", true, DType::kU8, &s.last_norm});
  }
  return out;
}

}  // namespace memtrain::optim
