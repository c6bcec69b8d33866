#include "optim/apollo.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/cpu/adamw.h"
#include "core/status.h"

namespace memtrain::optim {
namespace {

int64_t rank_of(const OptimConfig& cfg, bool mini) { return mini ? 1 : cfg.rank; }
double scale_of(const OptimConfig& cfg, bool mini) {
  return cfg.apollo_scale > 0 ? cfg.apollo_scale : (mini ? 128.0 : 1.0);
}

}  // namespace

bool apollo_projects(const OptimTarget& t) {
  return t.param->kind == model::ParamKind::kWeight && t.param->local_shape.size() == 2;
}

void apollo_projection(uint64_t seed, const std::string& param, int64_t period, int64_t rows, int64_t cols,
                       float* out) {
  philox_normal(philox_key(seed, absl::StrCat("apollo/", param, "/", period)), 0, rows * cols, 0.0f,
                static_cast<float>(1.0 / std::sqrt(static_cast<double>(rows))), out);
}

int64_t Apollo::state_bytes(const OptimTarget& t, const OptimConfig& cfg, bool mini) {
  if (!apollo_projects(t)) return 8 * t.n;
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
    if (apollo_projects(t)) {
      if (t.offset != 0 || t.n != shape_numel(t.param->local_shape)) {
        return config_error("optim.name", absl::StrCat(cfg.name, " projects whole matrices, but this rank updates a "
                                                       "piece of ", t.param->name, " (use zero.stage 0)"));
      }
      s.m = t.param->local_shape[0];
      s.n = t.param->local_shape[1];
      s.r = std::min(rank_of(cfg, mini), std::min(s.m, s.n));
      size = s.r * std::max(s.m, s.n);
    }
    MEMTRAIN_ASSIGN_OR_RETURN(s.mom1, Tensor::zeros({size}, DType::kF32, MemCategory::kOptimizerState));
    MEMTRAIN_ASSIGN_OR_RETURN(s.mom2, Tensor::zeros({size}, DType::kF32, MemCategory::kOptimizerState));
    opt->states_.push_back(std::move(s));
  }
  return std::unique_ptr<Optimizer>(std::move(opt));
}

void Apollo::step(double lr) {
  ++step_;
  for (size_t i = 0; i < targets_.size(); ++i) {
    const OptimTarget& t = targets_[i];
    State& s = states_[i];
    if (s.r > 0) {
      step_matrix(t, s, lr);
      continue;
    }
    const float wd = decays(*t.param, cfg_) ? static_cast<float>(cfg_.weight_decay) : 0.0f;
    cpu::adamw_step(t.value, t.grad, s.mom1.f32(), s.mom2.f32(), t.n, static_cast<float>(lr),
                    static_cast<float>(cfg_.beta1), static_cast<float>(cfg_.beta2), static_cast<float>(cfg_.eps), wd,
                    step_, ThreadPool::global());
  }
}

void Apollo::step_matrix(const OptimTarget& t, State& s, double lr) {
  // Project along the smaller side: rows (R = P G, r x n, channels are G's columns) when m <= n, else columns
  // (R = G P^T, m x r, channels are G's rows). Index R by (channel c, k < r).
  const bool by_rows = s.m <= s.n;
  const int64_t small = by_rows ? s.m : s.n, channels = by_rows ? s.n : s.m, r = s.r;
  std::vector<float> P(r * small);
  apollo_projection(seed_, t.param->name, (step_ - 1) / cfg_.update_proj_gap, r, small, P.data());
  const float* G = t.grad;
  auto g = [&](int64_t c, int64_t i) {  // G's element at channel c, position i along the small side
    return static_cast<double>(by_rows ? G[i * s.n + c] : G[c * s.n + i]);
  };
  const double b1 = cfg_.beta1, b2 = cfg_.beta2, eps = cfg_.eps;
  const double bc1 = 1 - std::pow(b1, static_cast<double>(step_)), bc2 = 1 - std::pow(b2, static_cast<double>(step_));
  float* M = s.mom1.f32();
  float* V = s.mom2.f32();
  std::vector<double> channel_scale(channels);
  double adam_sq = 0, proj_sq = 0;  // APOLLO-Mini's tensor-wise norms
  for (int64_t c = 0; c < channels; ++c) {
    double a_sq = 0, p_sq = 0;
    for (int64_t k = 0; k < r; ++k) {
      double rk = 0;
      for (int64_t i = 0; i < small; ++i) rk += static_cast<double>(P[k * small + i]) * g(c, i);
      float& mk = M[c * r + k];
      float& vk = V[c * r + k];
      mk = static_cast<float>(b1 * mk + (1 - b1) * rk);
      vk = static_cast<float>(b2 * vk + (1 - b2) * rk * rk);
      const double adam = (mk / bc1) / (std::sqrt(vk / bc2) + eps);
      a_sq += adam * adam;
      p_sq += rk * rk;
    }
    channel_scale[c] = std::sqrt(a_sq) / (std::sqrt(p_sq) + 1e-8);
    adam_sq += a_sq;
    proj_sq += p_sq;
  }
  if (mini_) std::fill(channel_scale.begin(), channel_scale.end(), std::sqrt(adam_sq) / (std::sqrt(proj_sq) + 1e-8));
  // The scaled full-rank gradient's norm, limited to 1.01x the last step's.
  double norm_sq = 0;
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t i = 0; i < small; ++i) norm_sq += std::pow(g(c, i) * channel_scale[c], 2);
  double norm = std::sqrt(norm_sq), limit = 1.0;
  if (s.last_norm >= 0) limit = std::max(norm / (s.last_norm + 1e-8), cfg_.apollo_norm_growth) / cfg_.apollo_norm_growth;
  s.last_norm = norm / limit;
  const double step = lr * scale_of(cfg_, mini_) / limit;
  const double decay = decays(*t.param, cfg_) ? 1 - lr * cfg_.weight_decay : 1.0;
  float* W = t.value;
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t i = 0; i < small; ++i) {
      float& w = by_rows ? W[i * s.n + c] : W[c * s.n + i];
      w = static_cast<float>(w * decay - step * channel_scale[c] * g(c, i));
    }
  }
}

}  // namespace memtrain::optim
