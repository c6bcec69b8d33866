#include "model/lm_head.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/cpu/cross_entropy.h"
#include "core/cpu/gemm.h"

namespace memtrain::model {

LmHead::LmHead(std::string name, Param* weight, int64_t V, int64_t C)
    : name_(std::move(name)), weight_(weight), V_(V), C_(C) {}

int64_t LmHead::chunk_rows() const {
  // About 8 MiB of logits per chunk: big enough for efficient GEMMs, small next to GPT-2's 50257-wide full logits.
  return std::max<int64_t>(16, (int64_t{2} << 20) / V_);
}

absl::StatusOr<double> LmHead::forward(const Tensor& h, const Tensor& targets, float grad_scale,
                                        ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  const int64_t N = h.rows();
  MEMTRAIN_CHECK(h.cols() == C_ && targets.numel() == N);
  const int32_t* tgt = targets.i32();
  for (int64_t i = 0; i < N; ++i) {
    if (tgt[i] >= V_) return absl::InvalidArgumentError(absl::StrCat("target token ", tgt[i], " >= vocab size ", V_));
  }
  const bool training = store.keeping();
  const int64_t chunk = std::min(N, chunk_rows());
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor logits, Tensor::empty({chunk, V_}, DType::kF32, MemCategory::kWorkspace));
  Tensor dh;
  if (training) {
    MEMTRAIN_ASSIGN_OR_RETURN(dh, Tensor::empty({N, C_}, DType::kF32, MemCategory::kActivations));
  }
  const float* W = weight_->value.f32();
  double loss = 0;
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t n = std::min(chunk, N - r0);
    const float* hc = h.f32() + r0 * C_;
    float* lg = logits.f32();
    cpu::sgemm(false, true, n, V_, C_, 1.0f, hc, C_, W, C_, 0.0f, lg, V_, pool);
    loss += cpu::softmax_cross_entropy(lg, tgt + r0, n, V_, grad_scale, training ? lg : nullptr, nullptr, pool);
    if (!training) continue;
    // lg now holds dL/dlogits: dh = dlogits W, dW += dlogits^T h.
    cpu::sgemm(false, false, n, C_, V_, 1.0f, lg, V_, W, C_, 0.0f, dh.f32() + r0 * C_, C_, pool);
    cpu::sgemm(true, false, V_, C_, n, 1.0f, lg, V_, hc, C_, 1.0f, weight_->grad.f32(), C_, pool);
  }
  if (training) MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/dh", dh));
  return loss;
}

absl::StatusOr<Tensor> LmHead::backward(ActivationStore& store) { return store.take(name_ + "/dh"); }

absl::StatusOr<Tensor> LmHead::logits(const Tensor& h) const {
  MEMTRAIN_CHECK(h.cols() == C_);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor out, Tensor::empty({h.rows(), V_}, DType::kF32, MemCategory::kActivations));
  cpu::sgemm(false, true, h.rows(), V_, C_, 1.0f, h.f32(), C_, weight_->value.f32(), C_, 0.0f, out.f32(), V_,
             ThreadPool::global());
  return out;
}

}  // namespace memtrain::model
