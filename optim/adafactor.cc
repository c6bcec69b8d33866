#include "optim/adafactor.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::optim {
namespace {

constexpr double kEps1 = 1e-30;  // added to g^2
constexpr double kEps2 = 1e-3;   // the floor of the parameter scale

double rms(const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return std::sqrt(s / static_cast<double>(n));
}

}  // namespace

int64_t Adafactor::state_bytes(const OptimTarget& t, const OptimConfig& cfg) {
  const Shape& s = t.param->local_shape;
  const int64_t second = s.size() >= 2 ? shape_numel(s) / s.back() + s.back() : t.n;  // rows + cols, or v
  return 4 * (second + (cfg.adafactor_momentum ? t.n : 0));
}

absl::StatusOr<std::unique_ptr<Optimizer>> Adafactor::create(std::vector<OptimTarget> targets,
                                                              const OptimConfig& cfg) {
  std::unique_ptr<Adafactor> opt(new Adafactor(std::move(targets), cfg));
  size_t largest = 0;
  for (const OptimTarget& t : opt->targets_) {
    const Shape& shape = t.param->local_shape;
    if (t.offset != 0 || t.n != shape_numel(shape)) {
      return config_error("optim.name", absl::StrCat("adafactor factors whole matrices, but this rank updates a piece "
                                                     "of ", t.param->name, " (optim/matrix_owners gives it whole)"));
    }
    State s;
    if (shape.size() >= 2) {
      s.cols = shape.back();
      s.rows = t.n / s.cols;  // leading dimensions flattened (the parameters here have two)
      MEMTRAIN_ASSIGN_OR_RETURN(s.row, Tensor::zeros({s.rows}, DType::kF32, MemCategory::kOptimizerState));
      MEMTRAIN_ASSIGN_OR_RETURN(s.col, Tensor::zeros({s.cols}, DType::kF32, MemCategory::kOptimizerState));
    } else {
      MEMTRAIN_ASSIGN_OR_RETURN(s.v, Tensor::zeros({t.n}, DType::kF32, MemCategory::kOptimizerState));
    }
    if (cfg.adafactor_momentum) {
      MEMTRAIN_ASSIGN_OR_RETURN(s.m, Tensor::zeros({t.n}, DType::kF32, MemCategory::kOptimizerState));
    }
    largest = std::max(largest, static_cast<size_t>(t.n));
    opt->states_.push_back(std::move(s));
  }
  opt->update_.resize(largest);
  return std::unique_ptr<Optimizer>(std::move(opt));
}

absl::Status Adafactor::step(double lr) {
  ++step_;
  for (size_t i = 0; i < targets_.size(); ++i) step_target(targets_[i], states_[i], lr);
  return absl::OkStatus();
}

void Adafactor::step_target(const OptimTarget& t, State& s, double lr) {
  const int64_t n = t.n;
  const float* g = t.grad;
  float* p = t.value;
  float* u = update_.data();
  if (cfg_.adafactor_relative_step) lr = std::min(1e-2, 1.0 / std::sqrt(static_cast<double>(step_)));
  if (cfg_.adafactor_scale_parameter) lr *= std::max(kEps2, rms(p, n));
  const double beta2t = 1.0 - std::pow(static_cast<double>(step_), cfg_.adafactor_decay_rate);
  if (s.rows > 0) {
    // Row means and column means of g^2 + eps1 into their averages; v ~ row_i col_j / mean(row).
    float* row = s.row.f32();
    float* col = s.col.f32();
    std::vector<double> col_sum(s.cols, 0.0);
    for (int64_t r = 0; r < s.rows; ++r) {
      double row_sum = 0;
      for (int64_t c = 0; c < s.cols; ++c) {
        const double sq = static_cast<double>(g[r * s.cols + c]) * g[r * s.cols + c] + kEps1;
        row_sum += sq;
        col_sum[c] += sq;
      }
      row[r] = static_cast<float>(beta2t * row[r] + (1 - beta2t) * row_sum / static_cast<double>(s.cols));
    }
    for (int64_t c = 0; c < s.cols; ++c)
      col[c] = static_cast<float>(beta2t * col[c] + (1 - beta2t) * col_sum[c] / static_cast<double>(s.rows));
    double row_mean = 0;
    for (int64_t r = 0; r < s.rows; ++r) row_mean += row[r];
    row_mean /= static_cast<double>(s.rows);
    for (int64_t r = 0; r < s.rows; ++r) {
      const double rf = 1.0 / std::sqrt(row[r] / row_mean);
      for (int64_t c = 0; c < s.cols; ++c)
        u[r * s.cols + c] = static_cast<float>(rf / std::sqrt(static_cast<double>(col[c])) * g[r * s.cols + c]);
    }
  } else {
    float* v = s.v.f32();
    for (int64_t i = 0; i < n; ++i) {
      v[i] = static_cast<float>(beta2t * v[i] + (1 - beta2t) * (static_cast<double>(g[i]) * g[i] + kEps1));
      u[i] = static_cast<float>(g[i] / std::sqrt(static_cast<double>(v[i])));
    }
  }
  // The update's RMS clipped to the threshold, then the step size.
  const double scale = lr / std::max(1.0, rms(u, n) / cfg_.adafactor_clip);
  for (int64_t i = 0; i < n; ++i) u[i] = static_cast<float>(u[i] * scale);
  if (cfg_.adafactor_momentum) {
    float* m = s.m.f32();
    const double b1 = cfg_.beta1;
    for (int64_t i = 0; i < n; ++i) u[i] = m[i] = static_cast<float>(b1 * m[i] + (1 - b1) * u[i]);
  }
  const double decay = decays(*t.param, cfg_) ? cfg_.weight_decay * lr : 0.0;
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(p[i] - decay * p[i] - u[i]);
}

std::vector<CheckpointArraySpec> Adafactor::checkpoint_layout(const model::Param& p, const OptimConfig& cfg) {
  std::vector<CheckpointArraySpec> out;
  if (p.shape.size() >= 2) {
    out.push_back({"row", {shape_numel(p.shape) / p.shape.back()}});
    out.push_back({"col", {p.shape.back()}});
  } else {
    out.push_back({"v", p.shape});
  }
  if (cfg.adafactor_momentum) out.push_back({"m", p.shape});
  return out;
}

absl::StatusOr<Optimizer::CheckpointStates> Adafactor::checkpoint_state() {
  CheckpointStates out;
  for (size_t i = 0; i < targets_.size(); ++i) {
    const OptimTarget& t = targets_[i];
    State& s = states_[i];
    if (s.rows > 0) {
      out.arrays.push_back({t, "row", true, DType::kF32, s.row.f32()});
      out.arrays.push_back({t, "col", true, DType::kF32, s.col.f32()});
    } else {
      out.arrays.push_back({t, "v", false, DType::kF32, s.v.f32()});
    }
    if (cfg_.adafactor_momentum) out.arrays.push_back({t, "m", false, DType::kF32, s.m.f32()});
  }
  return out;
}

}  // namespace memtrain::optim
