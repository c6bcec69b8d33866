#include "model/params.h"

#include <algorithm>

#include "core/philox.h"

namespace memtrain::model {

void for_each_global_run(const Param& p, const std::function<void(int64_t, int64_t, int64_t)>& fn) {
  const int64_t total = shape_numel(p.shape);
  if (p.tp.dim < 0) {
    fn(0, 0, total);
    return;
  }
  // The global tensor as (outer, extent, inner) around the split dim: a range [a, b) of it is, for each outer
  // index, one run of (b - a) * inner elements.
  const int64_t extent = p.shape[p.tp.dim];
  int64_t inner = 1;
  for (size_t d = p.tp.dim + 1; d < p.shape.size(); ++d) inner *= p.shape[d];
  const int64_t outer = total / (extent * inner);
  int64_t local = 0;
  for (int64_t o = 0; o < outer; ++o) {
    for (const IndexRange& r : p.tp.ranges) {
      const int64_t n = (r.second - r.first) * inner;
      fn(local, (o * extent + r.first) * inner, n);
      local += n;
    }
  }
}

Param& ParamSet::add(std::string name, Shape shape, ParamKind kind, ParamInit init, TpSplit tp) {
  MEMTRAIN_CHECK_MSG(find(name) == nullptr, "parameter registered twice: " + name);
  auto p = std::make_unique<Param>();
  p->name = std::move(name);
  p->local_shape = shape;
  if (tp.dim >= 0) {
    MEMTRAIN_CHECK(tp.dim < static_cast<int>(shape.size()));
    int64_t extent = 0;
    for (const IndexRange& r : tp.ranges) {
      MEMTRAIN_CHECK(0 <= r.first && r.first <= r.second && r.second <= shape[tp.dim]);
      extent += r.second - r.first;
    }
    p->local_shape[tp.dim] = extent;
  }
  p->tp = std::move(tp);
  p->shape = std::move(shape);
  p->kind = kind;
  p->init = init;
  p->unit = current_unit_;
  params_.push_back(std::move(p));
  return *params_.back();
}

absl::Status ParamSet::allocate() {
  for (auto& p : params_) {
    MEMTRAIN_ASSIGN_OR_RETURN(p->value, Tensor::zeros(p->local_shape, DType::kF32, MemCategory::kParameters));
    MEMTRAIN_ASSIGN_OR_RETURN(p->grad, Tensor::zeros(p->local_shape, DType::kF32, MemCategory::kGradients));
  }
  return absl::OkStatus();
}

void ParamSet::initialize(uint64_t seed) {
  for (auto& p : params_) initialize_local(*p, seed, 0, p->value.numel(), p->value.f32());
}

void ParamSet::initialize_local(const Param& p, uint64_t seed, int64_t begin, int64_t n, float* dst) {
  for_each_global_run(p, [&](int64_t local, int64_t global, int64_t len) {
    const int64_t lo = std::max(local, begin), hi = std::min(local + len, begin + n);
    if (lo < hi) initialize_slice(p, seed, global + (lo - local), hi - lo, dst + (lo - begin));
  });
}

void ParamSet::initialize_slice(const Param& p, uint64_t seed, int64_t begin, int64_t n, float* dst) {
  switch (p.init.kind) {
    case ParamInit::kZeros: std::fill(dst, dst + n, 0.0f); break;
    case ParamInit::kOnes: std::fill(dst, dst + n, 1.0f); break;
    case ParamInit::kNormal: philox_normal(philox_key(seed, p.name), begin, n, 0.0f, p.init.std, dst); break;
  }
}

void ParamSet::zero_grad() {
  for (auto& p : params_) p->grad.fill_zero();
}

Param* ParamSet::find(const std::string& name) {
  for (auto& p : params_)
    if (p->name == name) return p.get();
  return nullptr;
}

int64_t ParamSet::numel() const {
  int64_t n = 0;
  for (const auto& p : params_) n += shape_numel(p->shape);
  return n;
}

int64_t ParamSet::local_numel() const {
  int64_t n = 0;
  for (const auto& p : params_) n += shape_numel(p->local_shape);
  return n;
}

}  // namespace memtrain::model
