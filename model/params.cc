#include "model/params.h"

#include <algorithm>

#include "core/philox.h"

namespace memtrain::model {

Param& ParamSet::add(std::string name, Shape shape, ParamKind kind, ParamInit init) {
  MEMTRAIN_CHECK_MSG(find(name) == nullptr, "parameter registered twice: " + name);
  auto p = std::make_unique<Param>();
  p->name = std::move(name);
  p->shape = std::move(shape);
  p->kind = kind;
  p->init = init;
  p->unit = current_unit_;
  params_.push_back(std::move(p));
  return *params_.back();
}

absl::Status ParamSet::allocate() {
  for (auto& p : params_) {
    MEMTRAIN_ASSIGN_OR_RETURN(p->value, Tensor::zeros(p->shape, DType::kF32, MemCategory::kParameters));
    MEMTRAIN_ASSIGN_OR_RETURN(p->grad, Tensor::zeros(p->shape, DType::kF32, MemCategory::kGradients));
  }
  return absl::OkStatus();
}

void ParamSet::initialize(uint64_t seed) {
  for (auto& p : params_) initialize_slice(*p, seed, 0, p->value.numel(), p->value.f32());
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

}  // namespace memtrain::model
