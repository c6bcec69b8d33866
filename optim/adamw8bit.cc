#include "optim/adamw8bit.h"

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
    s.quantized = quantized(t);  // by the whole tensor's size, so every piece of a sharded tensor decides alike
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
    if (!s.quantized) {
      adamw_update(t, s.m.f32(), s.v.f32(), cfg_, lr, step_);
      continue;
    }
    const cpu::AdamWScalars sc = cpu::adamw_scalars(static_cast<float>(lr), b1, b2, eps, wd, step_);
    cpu::adamw8bit_step(t.value, t.grad, s.m.data<uint8_t>(), s.m_absmax.f32(), s.v.data<uint8_t>(),
                        s.v_absmax.f32(), t.offset, t.n, sc, pool);
  }
  return absl::OkStatus();
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

}  // namespace memtrain::optim
