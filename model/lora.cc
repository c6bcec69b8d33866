#include "model/lora.h"

#include <algorithm>
#include <array>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/cpu/gemm.h"
#include "core/philox.h"

namespace memtrain::model {

void lora_forward(const LoraAdapter& a, const float* x, int64_t N, float* h, float* y, ThreadPool& pool) {
  cpu::sgemm(false, true, N, a.r, a.in, 1.0f, x, a.in, a.A, a.in, 0.0f, h, a.r, pool);
  cpu::sgemm(false, true, N, a.out, a.r, a.scale, h, a.r, a.B, a.r, 1.0f, y, a.out, pool);
}

void lora_backward(const LoraAdapter& a, const float* x, const float* h, const float* dy, int64_t N, float* dh,
                   float* dx, ThreadPool& pool) {
  // dB (out, r) += scale * dy^T h
  cpu::sgemm(true, false, a.out, a.r, N, a.scale, dy, a.out, h, a.r, 1.0f, a.dB, a.r, pool);
  // dh (N, r) = scale * dy B
  cpu::sgemm(false, false, N, a.r, a.out, a.scale, dy, a.out, a.B, a.r, 0.0f, dh, a.r, pool);
  // dA (r, in) += dh^T x
  if (a.dA != nullptr) cpu::sgemm(true, false, a.r, a.in, N, 1.0f, dh, a.r, x, a.in, 1.0f, a.dA, a.in, pool);
  // dx (N, in) += dh A
  if (dx != nullptr) cpu::sgemm(false, false, N, a.in, a.r, 1.0f, dh, a.r, a.A, a.in, 1.0f, dx, a.in, pool);
}

void lora_merge(const LoraAdapter& a, bool in_out, float* W, ThreadPool& pool) {
  if (in_out) {
    // W (in, out) += scale * (B A)^T = scale * A^T B^T
    cpu::sgemm(true, true, a.in, a.out, a.r, a.scale, a.A, a.in, a.B, a.r, 1.0f, W, a.out, pool);
  } else {
    // W (out, in) += scale * B A
    cpu::sgemm(false, false, a.out, a.in, a.r, a.scale, a.B, a.r, a.A, a.in, 1.0f, W, a.in, pool);
  }
}

namespace {

// A parameter of a fine-tune by name: trainable, or in its frozen set.
Param* find_in_fine_tune(const ParamSet& tuned, const std::string& name) {
  for (const ParamSet* set : {&tuned, static_cast<const ParamSet*>(tuned.frozen_set())})
    for (const auto& p : set->all())
      if (p->name == name) return p.get();
  return nullptr;
}

}  // namespace

std::vector<AdaptedProjection> adapted_projections(const ParamSet& tuned) {
  std::vector<AdaptedProjection> out;
  const auto& base = tuned.frozen_set()->all();
  for (size_t i = 0; i < base.size(); ++i) {
    if (!base[i]->projection) continue;
    const std::string prefix = base[i]->name.substr(0, base[i]->name.rfind('.'));
    Param* A = find_in_fine_tune(tuned, prefix + ".lora_A.weight");
    Param* B = find_in_fine_tune(tuned, prefix + ".lora_B.weight");
    if (A != nullptr && B != nullptr) out.push_back({base[i].get(), A, B, i});
  }
  return out;
}

absl::Status restart_adapters(ParamSet& params, uint64_t seed) {
  MEMTRAIN_CHECK(params.lora() != nullptr);
  const float scale = params.lora()->scale();
  for (const auto& [w, A, B, index] : adapted_projections(params)) {
    if (!w->value.defined())
      return absl::FailedPreconditionError(absl::StrCat("restart_adapters: '", w->name, "' is not stored in fp32"));
    const int64_t r = A->local_shape[0], in = A->local_shape[1], out = B->local_shape[0];
    lora_merge({in, out, r, scale, A->value.f32(), B->value.f32(), nullptr, nullptr}, w->in_out, w->value.f32(),
               ThreadPool::global());
    ParamSet::initialize_local(*A, seed, 0, A->value.numel(), A->value.f32());
    B->value.fill_zero();
  }
  return absl::OkStatus();
}

uint64_t adapter_stage_seed(uint64_t seed, int64_t stage) {
  if (stage == 0) return seed;
  const std::array<uint32_t, 4> bits = philox4x32(philox_key(seed, "lora.stage"), static_cast<uint64_t>(stage));
  return (static_cast<uint64_t>(bits[0]) << 32) | bits[1];
}

absl::Status merge_adapters(const ParamSet& tuned, ParamSet& whole) {
  MEMTRAIN_CHECK(tuned.lora() != nullptr);
  const float scale = tuned.lora()->scale();
  auto find = [&](const std::string& name) -> const Param* { return find_in_fine_tune(tuned, name); };
  for (const auto& w : whole.all()) {
    const Param* b = find(w->name);
    if (b == nullptr || b->adapter || b->shape != w->shape)
      return absl::InvalidArgumentError(absl::StrCat("merge: no base tensor '", w->name, "' of that shape"));
    float* dst = w->value.f32();
    if (b->nf4) {
      if (!b->in_out) {
        b->nf4->dequantize(dst);
      } else {  // stored as (out, in)
        const int64_t in = w->shape[0], out = w->shape[1];
        std::vector<float> rows(in * out);
        b->nf4->dequantize(rows.data());
        for (int64_t o = 0; o < out; ++o)
          for (int64_t i = 0; i < in; ++i) dst[i * out + o] = rows[o * in + i];
      }
    } else {
      std::copy_n(b->value.f32(), b->value.numel(), dst);
    }
    if (!w->projection) continue;
    const std::string prefix = w->name.substr(0, w->name.rfind('.'));
    const Param* A = find(prefix + ".lora_A.weight");
    const Param* B = find(prefix + ".lora_B.weight");
    if (A == nullptr || B == nullptr) continue;
    const int64_t in = A->shape[1], out = B->shape[0], r = A->shape[0];
    lora_merge({in, out, r, scale, A->value.f32(), B->value.f32(), nullptr, nullptr}, w->in_out, dst,
               ThreadPool::global());
  }
  return absl::OkStatus();
}

}  // namespace memtrain::model
