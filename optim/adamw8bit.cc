#include "optim/adamw8bit.h"

#include <algorithm>
#include <map>

#include "core/cpu/adamw.h"
#include "core/cpu/dynamic_map.h"
#include "optim/adamw.h"

namespace memtrain::optim {

absl::StatusOr<std::unique_ptr<Optimizer>> AdamW8bit::create(std::vector<OptimTarget> targets,
                                                              const OptimConfig& cfg) {
  std::unique_ptr<AdamW8bit> opt(new AdamW8bit(std::move(targets), cfg));
  const uint8_t m_zero = cpu::nearest_code(cpu::dynamic_code_book(true), 0.0f);
  const uint8_t v_zero = cpu::nearest_code(cpu::dynamic_code_book(false), 0.0f);
  for (const OptimTarget& t : opt->targets_) {
    State s;
    s.quantized = quantized(t);
    if (!s.quantized) {
      MEMTRAIN_ASSIGN_OR_RETURN(s.m, Tensor::zeros({t.n}, DType::kF32, MemCategory::kOptimizerState));
      MEMTRAIN_ASSIGN_OR_RETURN(s.v, Tensor::zeros({t.n}, DType::kF32, MemCategory::kOptimizerState));
    } else {
      const int64_t blocks = cpu::blocks_touched(t.offset, t.n, kBlock);
      MEMTRAIN_ASSIGN_OR_RETURN(s.m, Tensor::empty({t.n}, DType::kU8, MemCategory::kOptimizerState));
      MEMTRAIN_ASSIGN_OR_RETURN(s.v, Tensor::empty({t.n}, DType::kU8, MemCategory::kOptimizerState));
      std::fill_n(s.m.data<uint8_t>(), t.n, m_zero);
      std::fill_n(s.v.data<uint8_t>(), t.n, v_zero);
      MEMTRAIN_ASSIGN_OR_RETURN(s.m_absmax, Tensor::zeros({blocks}, DType::kF32, MemCategory::kOptimizerState));
      MEMTRAIN_ASSIGN_OR_RETURN(s.v_absmax, Tensor::zeros({blocks}, DType::kF32, MemCategory::kOptimizerState));
    }
    opt->states_.push_back(std::move(s));
  }
  return std::unique_ptr<Optimizer>(std::move(opt));
}

int64_t AdamW8bit::state_bytes(const OptimTarget& t) {
  return quantized(t) ? 2 * t.n + 8 * cpu::blocks_touched(t.offset, t.n, kBlock) : 8 * t.n;
}

absl::Status AdamW8bit::step(double lr) {
  ++step_;
  ThreadPool& pool = ThreadPool::global();
  for (size_t i = 0; i < targets_.size(); ++i) {
    const OptimTarget& t = targets_[i];
    State& s = states_[i];
    const float wd = decays(*t.param, cfg_) ? static_cast<float>(cfg_.weight_decay) : 0.0f;
    const float b1 = static_cast<float>(cfg_.beta1), b2 = static_cast<float>(cfg_.beta2);
    const float eps = static_cast<float>(cfg_.eps);
    MEMTRAIN_RETURN_IF_ERROR(before_target(i));
    if (!s.quantized) {
      adamw_update(t, s.m.f32(), s.v.f32(), cfg_, lr, step_);
    } else {
      const cpu::AdamWScalars sc = cpu::adamw_scalars(static_cast<float>(lr), b1, b2, eps, wd, step_);
      cpu::adamw8bit_step(t.value, t.grad, s.m.data<uint8_t>(), s.m_absmax.f32(), s.v.data<uint8_t>(),
                          s.v_absmax.f32(), t.offset, t.n, sc, pool);
    }
    MEMTRAIN_RETURN_IF_ERROR(after_target(i));
  }
  return finish_targets();
}

std::vector<float> AdamW8bit::moment(size_t i, bool second) const {
  const OptimTarget& t = targets_[i];
  const State& s = states_[i];
  const Tensor& state = second ? s.v : s.m;
  if (!s.quantized) return std::vector<float>(state.f32(), state.f32() + t.n);
  std::vector<float> out(t.n);
  const cpu::CodeBook& book = cpu::dynamic_code_book(!second);
  const float* absmax = (second ? s.v_absmax : s.m_absmax).f32();
  const int64_t first = t.offset / kBlock;
  for (int64_t j = 0; j < t.n; ++j) out[j] = book[state.data<uint8_t>()[j]] * absmax[(t.offset + j) / kBlock - first];
  return out;
}

std::vector<CheckpointArraySpec> AdamW8bit::checkpoint_layout(const model::Param& p) {
  if (!quantized(p)) return {{"m", p.shape}, {"v", p.shape}};
  return {{"m_codes", p.shape, DType::kU8}, {"m_absmax", p.shape}, {"v_codes", p.shape, DType::kU8}, {"v_absmax", p.shape}};
}

absl::StatusOr<Optimizer::CheckpointStates> AdamW8bit::checkpoint_state() {
  CheckpointStates out;
  for (size_t i = 0; i < targets_.size(); ++i) {
    const OptimTarget& t = targets_[i];
    State& s = states_[i];
    if (!s.quantized) {
      out.arrays.push_back({t, "m", false, DType::kF32, s.m.f32()});
      out.arrays.push_back({t, "v", false, DType::kF32, s.v.f32()});
      continue;
    }
    for (const bool second : {false, true}) {
      MEMTRAIN_ASSIGN_OR_RETURN(Tensor absmax, Tensor::empty({t.n}, DType::kF32, MemCategory::kOptimizerState));
      const float* block_absmax = (second ? s.v_absmax : s.m_absmax).f32();
      const int64_t first = t.offset / kBlock;
      for (int64_t j = 0; j < t.n; ++j) absmax.f32()[j] = block_absmax[(t.offset + j) / kBlock - first];
      const std::string m = second ? "v" : "m";
      out.arrays.push_back({t, m + "_codes", false, DType::kU8, (second ? s.v : s.m).raw()});
      out.arrays.push_back({t, m + "_absmax", false, DType::kF32, absmax.f32()});
      out.staging.push_back(std::move(absmax));
    }
  }
  return out;
}

absl::Status AdamW8bit::restore(const CheckpointStates& states, int64_t steps_taken) {
  step_ = steps_taken;
  // The codes were read in place; each block takes the absmax its elements were stored with, or, when they were
  // stored with several (another mesh's blocks), is requantized from their values.
  std::map<std::pair<const model::Param*, std::string>, const float*> absmax_of;
  for (const CheckpointArray& a : states.arrays) {
    if (a.name == "m_absmax" || a.name == "v_absmax") absmax_of[{a.target.param, a.name}] = static_cast<float*>(a.data);
  }
  ThreadPool& pool = ThreadPool::global();
  for (size_t i = 0; i < targets_.size(); ++i) {
    const OptimTarget& t = targets_[i];
    State& s = states_[i];
    if (!s.quantized) continue;
    for (const bool second : {false, true}) {
      const float* element_absmax = absmax_of.at({t.param, second ? "v_absmax" : "m_absmax"});
      uint8_t* codes = (second ? s.v : s.m).data<uint8_t>();
      float* block_absmax = (second ? s.v_absmax : s.m_absmax).f32();
      const cpu::CodeBook& book = cpu::dynamic_code_book(!second);
      const int64_t first = t.offset / kBlock;
      for (int64_t b = 0; b < cpu::blocks_touched(t.offset, t.n, kBlock); ++b) {
        const int64_t i0 = std::max<int64_t>(0, (first + b) * kBlock - t.offset);
        const int64_t i1 = std::min<int64_t>(t.n, (first + b + 1) * kBlock - t.offset);
        block_absmax[b] = element_absmax[i0];
        if (std::all_of(element_absmax + i0, element_absmax + i1, [&](float a) { return a == element_absmax[i0]; }))
          continue;
        float values[kBlock];
        for (int64_t j = i0; j < i1; ++j) values[j - i0] = book[codes[j]] * element_absmax[j];
        cpu::quantize_blocks(book, values, i1 - i0, kBlock, codes + i0, block_absmax + b, pool);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace memtrain::optim
