#include "optim/smmf.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::optim {

std::pair<int64_t, int64_t> Smmf::square_shape(int64_t n) {
  int64_t cols = static_cast<int64_t>(std::sqrt(static_cast<double>(n)));
  while (cols * cols > n) --cols;  // the root rounded down exactly, whatever sqrt's rounding
  while ((cols + 1) * (cols + 1) <= n) ++cols;
  while (cols > 1 && n % cols != 0) --cols;
  return {n / std::max<int64_t>(cols, 1), std::max<int64_t>(cols, 1)};
}

int64_t Smmf::state_bytes(const OptimTarget& t) {
  const auto [rows, cols] = square_shape(t.n);
  return 8 * (rows + cols) + (t.n + 7) / 8;
}

absl::StatusOr<std::unique_ptr<Optimizer>> Smmf::create(std::vector<OptimTarget> targets, const OptimConfig& cfg) {
  std::unique_ptr<Smmf> opt(new Smmf(std::move(targets), cfg));
  int64_t widest = 0;
  for (const OptimTarget& t : opt->targets_) {
    if (t.offset != 0 || t.n != shape_numel(t.param->local_shape)) {
      return config_error("optim.name", absl::StrCat("smmf factors whole tensors, but this rank updates a piece of ",
                                                     t.param->name, " (optim/matrix_owners gives it whole)"));
    }
    State s;
    std::tie(s.rows, s.cols) = square_shape(t.n);
    for (Tensor* f : {&s.m_row, &s.v_row}) {
      MEMTRAIN_ASSIGN_OR_RETURN(*f, Tensor::zeros({s.rows}, DType::kF32, MemCategory::kOptimizerState));
    }
    for (Tensor* f : {&s.m_col, &s.v_col}) {
      MEMTRAIN_ASSIGN_OR_RETURN(*f, Tensor::zeros({s.cols}, DType::kF32, MemCategory::kOptimizerState));
    }
    MEMTRAIN_ASSIGN_OR_RETURN(s.m_sign, Tensor::zeros({(t.n + 7) / 8}, DType::kU8, MemCategory::kOptimizerState));
    widest = std::max(widest, s.cols);
    opt->states_.push_back(std::move(s));
  }
  opt->m_col_sum_.resize(widest);
  opt->v_col_sum_.resize(widest);
  return std::unique_ptr<Optimizer>(std::move(opt));
}

absl::Status Smmf::step(double lr) {
  ++step_;
  for (size_t i = 0; i < targets_.size(); ++i) step_target(targets_[i], states_[i], lr);
  return absl::OkStatus();
}

void Smmf::step_target(const OptimTarget& t, State& s, double lr) {
  const double t_ = static_cast<double>(step_);
  const double b1 = cfg_.beta1 * std::pow(cfg_.smmf_growth_rate, t_ - 1);
  const double b2 = 1 - std::pow(t_, cfg_.smmf_decay_rate);
  const double decay = decays(*t.param, cfg_) ? cfg_.weight_decay * lr : 0.0;
  const float* g = t.grad;
  float* p = t.value;
  float* m_row = s.m_row.f32();
  float* v_row = s.v_row.f32();
  const float* m_col = s.m_col.f32();
  const float* v_col = s.v_col.f32();
  auto* sign = s.m_sign.data<uint8_t>();
  std::fill_n(m_col_sum_.begin(), s.cols, 0.0);
  std::fill_n(v_col_sum_.begin(), s.cols, 0.0);
  for (int64_t r = 0; r < s.rows; ++r) {
    double m_sum = 0, v_sum = 0;
    const double mr = m_row[r], vr = v_row[r];
    for (int64_t c = 0; c < s.cols; ++c) {
      const int64_t i = r * s.cols + c;
      const bool positive = (sign[i >> 3] >> (i & 7)) & 1;
      const double m_old = (positive ? 1.0 : -1.0) * mr * m_col[c];
      const double gi = g[i];
      const double m = b1 * m_old + (1 - b1) * gi;
      const double v = b2 * vr * v_col[c] + (1 - b2) * gi * gi;
      p[i] = static_cast<float>(p[i] - decay * p[i] - lr * m / (std::sqrt(v) + cfg_.eps));
      // Compress as we go: the new sign in place (the old one was read above), |M| and V into row and column sums.
      sign[i >> 3] = static_cast<uint8_t>((sign[i >> 3] & ~(1u << (i & 7))) | (m > 0 ? 1u << (i & 7) : 0u));
      m_sum += std::fabs(m);
      v_sum += v;
      m_col_sum_[c] += std::fabs(m);
      v_col_sum_[c] += v;
    }
    m_row[r] = static_cast<float>(m_sum);  // row r's old factor is no longer needed
    v_row[r] = static_cast<float>(v_sum);
  }
  // The column factors divided by their sum (the total), so that row x column is the rank-1 fit keeping the sum.
  auto normalize = [&](const std::vector<double>& sums, float* out) {
    double total = 0;
    for (int64_t c = 0; c < s.cols; ++c) total += sums[c];
    for (int64_t c = 0; c < s.cols; ++c) out[c] = static_cast<float>(total > 0 ? sums[c] / total : sums[c]);
  };
  normalize(m_col_sum_, s.m_col.f32());
  normalize(v_col_sum_, s.v_col.f32());
}

std::vector<CheckpointArraySpec> Smmf::checkpoint_layout(const model::Param& p) {
  const int64_t n = shape_numel(p.shape);
  const auto [rows, cols] = square_shape(n);
  return {{"m_row", {rows}}, {"m_col", {cols}}, {"m_sign", {(n + 7) / 8}, DType::kU8}, {"v_row", {rows}},
          {"v_col", {cols}}};
}

absl::StatusOr<Optimizer::CheckpointStates> Smmf::checkpoint_state() {
  CheckpointStates out;
  for (size_t i = 0; i < targets_.size(); ++i) {
    State& s = states_[i];
    out.arrays.push_back({targets_[i], "m_row", true, DType::kF32, s.m_row.raw()});
    out.arrays.push_back({targets_[i], "m_col", true, DType::kF32, s.m_col.raw()});
    out.arrays.push_back({targets_[i], "m_sign", true, DType::kU8, s.m_sign.raw()});
    out.arrays.push_back({targets_[i], "v_row", true, DType::kF32, s.v_row.raw()});
    out.arrays.push_back({targets_[i], "v_col", true, DType::kF32, s.v_col.raw()});
  }
  return out;
}

}  // namespace memtrain::optim
