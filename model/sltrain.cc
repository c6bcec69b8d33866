#include "model/sltrain.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/philox.h"

namespace memtrain::model {

std::vector<int64_t> sltrain_support(const std::string& name, int64_t numel, double delta) {
  // Gaps between kept elements are geometric: P(gap = g) = (1 - delta)^g delta, g = floor(log(u) / log(1 - delta)).
  const PhiloxKey key = philox_key(/*seed=*/42, name + ".sltrain.support");
  const double log_keep = std::log1p(-delta);
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(delta * static_cast<double>(numel) * 1.01) + 16);
  int64_t at = -1;
  for (uint64_t k = 0;; ++k) {
    const double u = 1.0 - philox_unit_double(key, k);  // (0, 1]
    at += 1 + static_cast<int64_t>(std::floor(std::log(u) / log_keep));
    if (at >= numel || at < 0) break;
    out.push_back(at);
  }
  return out;
}

SparseWeight make_sparse_weight(ParamSet& params, const std::string& name, const Shape& shape,
                                const TpSplit& weight_split, double delta, float bound) {
  const std::vector<int64_t> support = sltrain_support(name, shape_numel(shape), delta);
  // This rank's part of W as runs of the global tensor; the support positions inside each run are a range of
  // value indices (the support is ascending and so are the runs).
  Param w;
  w.shape = shape;
  w.tp = weight_split;
  std::vector<IndexRange> ranges;
  std::vector<int32_t> local_positions;
  int64_t local_numel = 0;
  for_each_global_run(w, [&](int64_t l, int64_t g, int64_t n) {
    const auto lo = std::lower_bound(support.begin(), support.end(), g);
    const auto hi = std::lower_bound(lo, support.end(), g + n);
    for (auto it = lo; it != hi; ++it) local_positions.push_back(static_cast<int32_t>(l + (*it - g)));
    local_numel = std::max(local_numel, l + n);
    const int64_t a = lo - support.begin(), b = hi - support.begin();
    if (a == b) return;
    if (!ranges.empty() && ranges.back().second == a) ranges.back().second = b; else ranges.push_back({a, b});
  });
  MEMTRAIN_CHECK_MSG(local_numel < std::numeric_limits<int32_t>::max(), "an SLTrain weight part over 2^31 elements");
  SparseWeight s;
  s.values = &params.add(name + ".sltrain.values", {static_cast<int64_t>(support.size())}, ParamKind::kWeight,
                         ParamInit{ParamInit::kUniform, bound},
                         TpSplit::along(0, std::move(ranges), weight_split.primary));
  auto positions = Tensor::empty({static_cast<int64_t>(local_positions.size())}, DType::kI32, MemCategory::kParameters);
  MEMTRAIN_CHECK_MSG(positions.ok(), absl::StrCat("SLTrain support of ", name, ": ", positions.status().message()));
  std::copy(local_positions.begin(), local_positions.end(), positions->i32());
  s.positions = std::move(*positions);
  return s;
}

void sparse_scatter(const SparseWeight& s, float* W, int64_t numel) {
  std::fill(W, W + numel, 0.0f);
  const int32_t* at = s.positions.i32();
  const float* v = s.values->value.f32();
  for (int64_t k = 0; k < s.positions.numel(); ++k) W[at[k]] = v[k];
}

absl::Status sparse_values_grad(const SparseWeight& s, const float* x, const float* dy, int64_t N, int64_t in,
                                int64_t out, bool in_out, float* grad, ThreadPool& pool) {
  // Transposed, each value's gradient is a dot of two contiguous rows of length N.
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor xt, Tensor::empty({in, N}, DType::kF32, MemCategory::kWorkspace));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dyt, Tensor::empty({out, N}, DType::kF32, MemCategory::kWorkspace));
  float* X = xt.f32();
  float* D = dyt.f32();
  pool.parallel_for(N, 64, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t i = 0; i < in; ++i) X[i * N + n] = x[n * in + i];
      for (int64_t o = 0; o < out; ++o) D[o * N + n] = dy[n * out + o];
    }
  });
  const int32_t* at = s.positions.i32();
  pool.parallel_for(s.positions.numel(), 256, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t p = at[k];
      const int64_t o = in_out ? p % out : p / in, i = in_out ? p / out : p % in;
      const float* a = D + o * N;
      const float* b = X + i * N;
      float sum = 0;
      for (int64_t n = 0; n < N; ++n) sum += a[n] * b[n];
      grad[k] += sum;
    }
  });
  return absl::OkStatus();
}

}  // namespace memtrain::model
