#include "model/params.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
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

void ParamSet::fine_tune(LoraSpec spec) {
  MEMTRAIN_CHECK(frozen_ == nullptr);
  frozen_ = std::make_unique<ParamSet>();
  frozen_->current_unit_ = current_unit_;
  lora_ = std::move(spec);
}

Param& ParamSet::add(std::string name, Shape shape, ParamKind kind, ParamInit init, TpSplit tp) {
  if (frozen_ != nullptr) {
    Param& p = frozen_->add(std::move(name), std::move(shape), kind, init, std::move(tp));
    p.frozen = true;
    return p;
  }
  return register_param(std::move(name), std::move(shape), kind, init, std::move(tp));
}

Param& ParamSet::add_adapter(std::string name, Shape shape, ParamInit init, TpSplit tp, bool trainable) {
  MEMTRAIN_CHECK_MSG(frozen_ != nullptr, "adapters need fine_tune(): " + name);
  ParamSet& set = trainable ? *this : *frozen_;
  Param& p = set.register_param(std::move(name), std::move(shape), ParamKind::kWeight, init, std::move(tp));
  p.adapter = true;
  p.frozen = !trainable;
  return p;
}

Param& ParamSet::register_param(std::string name, Shape shape, ParamKind kind, ParamInit init, TpSplit tp) {
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
    if (!p->frozen) {
      MEMTRAIN_ASSIGN_OR_RETURN(p->grad, Tensor::zeros(p->local_shape, DType::kF32, MemCategory::kGradients));
    }
  }
  return absl::OkStatus();
}

void ParamSet::initialize(uint64_t seed) {
  for (auto& p : params_) initialize_local(*p, seed, 0, p->value.numel(), p->value.f32());
}

namespace {
// fill(global_offset, len, dst) for the runs of p's global tensor that make up local elements [begin, begin + n).
template <class Fill>
void for_each_local_slice(const Param& p, int64_t begin, int64_t n, float* dst, Fill fill) {
  for_each_global_run(p, [&](int64_t local, int64_t global, int64_t len) {
    const int64_t lo = std::max(local, begin), hi = std::min(local + len, begin + n);
    if (lo < hi) fill(global + (lo - local), hi - lo, dst + (lo - begin));
  });
}
}  // namespace

void ParamSet::initialize_local(const Param& p, uint64_t seed, int64_t begin, int64_t n, float* dst) {
  for_each_local_slice(p, begin, n, dst, [&](int64_t g, int64_t len, float* out) {
    initialize_slice(p, seed, g, len, out);
  });
}

void ParamSet::copy_local(const Param& p, const float* global, int64_t begin, int64_t n, float* dst) {
  for_each_local_slice(p, begin, n, dst, [&](int64_t g, int64_t len, float* out) { std::copy_n(global + g, len, out); });
}

void ParamSet::initialize_slice(const Param& p, uint64_t seed, int64_t begin, int64_t n, float* dst) {
  switch (p.init.kind) {
    case ParamInit::kZeros: std::fill(dst, dst + n, 0.0f); break;
    case ParamInit::kOnes: std::fill(dst, dst + n, 1.0f); break;
    case ParamInit::kNormal: philox_normal(philox_key(seed, p.name), begin, n, 0.0f, p.init.std, dst); break;
    case ParamInit::kUniform: philox_uniform(philox_key(seed, p.name), begin, n, -p.init.std, p.init.std, dst); break;
  }
}

void ParamSet::zero_grad() {
  for (auto& p : params_)
    if (p->grad.defined()) p->grad.fill_zero();
}

absl::Status ParamSet::quantize_frozen_projections(const WholeValue& whole) {
  for (auto& p : params_) {
    if (!p->frozen || !p->projection || p->nf4) continue;
    // As (out, in), whatever the layout: Conv1D's (in, out) is transposed.
    const int64_t out = p->in_out ? p->shape[1] : p->shape[0], in = p->in_out ? p->shape[0] : p->shape[1];
    Tensor global = p->value;
    if (p->local_shape != p->shape) {
      MEMTRAIN_CHECK_MSG(whole != nullptr, "quantizing a tensor-parallel part needs the whole weight: " + p->name);
      MEMTRAIN_ASSIGN_OR_RETURN(global, whole(*p));
    }
    Tensor rows = global;
    if (p->in_out) {
      MEMTRAIN_ASSIGN_OR_RETURN(rows, Tensor::empty({out, in}, DType::kF32, MemCategory::kWorkspace));
      const float* w = global.f32();
      for (int64_t i = 0; i < in; ++i)
        for (int64_t o = 0; o < out; ++o) rows.f32()[o * in + i] = w[i * out + o];
    }
    // This rank's rows (output features) and columns (input features) of the (out, in) matrix.
    std::vector<int64_t> part_rows;
    int64_t c0 = 0, c1 = in;
    const bool split_outputs = p->tp.dim >= 0 && p->tp.dim == (p->in_out ? 1 : 0);
    for (const IndexRange& r : split_outputs ? p->tp.ranges : std::vector<IndexRange>{{0, out}})
      for (int64_t o = r.first; o < r.second; ++o) part_rows.push_back(o);
    if (p->tp.dim >= 0 && !split_outputs) c0 = p->tp.ranges.front().first, c1 = p->tp.ranges.front().second;
    absl::StatusOr<std::shared_ptr<const Nf4Weight>> q =
        Nf4Weight::quantize_part(rows.f32(), out, in, std::move(part_rows), c0, c1);
    if (!q.ok()) return absl::InvalidArgumentError(absl::StrCat(p->name, ": ", q.status().message()));
    p->nf4 = *std::move(q);
    p->value = Tensor();
  }
  return absl::OkStatus();
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

int64_t ParamSet::local_value_bytes(bool nf4) const {
  int64_t bytes = 0;
  for (const auto& p : params_) {
    const int64_t n = shape_numel(p->local_shape);
    bytes += nf4 && p->frozen && p->projection ? Nf4Weight::part_bytes(n, shape_numel(p->shape)) : 4 * n;
  }
  return bytes;
}

int64_t ParamSet::local_numel() const {
  int64_t n = 0;
  for (const auto& p : params_) n += shape_numel(p->local_shape);
  return n;
}

}  // namespace memtrain::model
