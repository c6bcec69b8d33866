#include "model/lm_head.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/cpu/cross_entropy.h"
#include "core/cpu/gemm.h"

namespace memtrain::model {

LmHead::LmHead(std::string name, Param* weight, int64_t V, int64_t C, IndexRange vocab, const TensorParallel& tp)
    : name_(std::move(name)), weight_(weight), V_(V), C_(C), vocab_(vocab), Vl_(vocab.second - vocab.first), tp_(tp) {
  MEMTRAIN_CHECK(weight->local_shape == (Shape{Vl_, C}));
}

int64_t LmHead::chunk_rows() const {
  // About 8 MiB of logits per chunk: big enough for efficient GEMMs, small next to GPT-2's 50257-wide full logits.
  return std::max<int64_t>(16, (int64_t{2} << 20) / std::max<int64_t>(Vl_, 1));
}

absl::StatusOr<double> LmHead::vocab_parallel_cross_entropy(float* lg, const int32_t* tgt, int64_t n,
                                                            float grad_scale, bool training, float* stats) const {
  ThreadPool& pool = ThreadPool::global();
  float* row_max = stats;
  float* sums = stats + n;  // n sums of exponentials, then n target logits
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(Vl_, 1));
  pool.parallel_for(n, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* l = lg + r * Vl_;
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t v = 0; v < Vl_; ++v) m = std::max(m, l[v]);
      row_max[r] = m;
    }
  });
  MEMTRAIN_RETURN_IF_ERROR(tp_.max(row_max, n));
  pool.parallel_for(n, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* l = lg + r * Vl_;
      double s = 0;
      for (int64_t v = 0; v < Vl_; ++v) s += std::exp(static_cast<double>(l[v]) - row_max[r]);
      sums[r] = static_cast<float>(s);
      const int64_t t = tgt[r] - vocab_.first;
      sums[n + r] = (t >= 0 && t < Vl_) ? l[t] : 0.0f;  // one rank holds the target; the others add 0
    }
  });
  MEMTRAIN_RETURN_IF_ERROR(tp_.sum(sums, 2 * n));
  double loss = 0;  // in row order, identical on every tp rank
  for (int64_t r = 0; r < n; ++r) {
    if (tgt[r] >= 0) loss += std::log(static_cast<double>(sums[r])) + row_max[r] - sums[n + r];
  }
  if (!training) return loss;
  pool.parallel_for(n, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* l = lg + r * Vl_;
      if (tgt[r] < 0) {
        std::fill(l, l + Vl_, 0.0f);
        continue;
      }
      const double scale = grad_scale / static_cast<double>(sums[r]);
      for (int64_t v = 0; v < Vl_; ++v) l[v] = static_cast<float>(std::exp(static_cast<double>(l[v]) - row_max[r]) * scale);
      const int64_t t = tgt[r] - vocab_.first;
      if (t >= 0 && t < Vl_) l[t] -= grad_scale;
    }
  });
  return loss;
}

absl::StatusOr<double> LmHead::forward(const Tensor& h_rows, const Tensor& targets, float grad_scale,
                                        ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor h, tp_.gather_rows(h_rows));
  const int64_t N = h.rows();
  MEMTRAIN_CHECK(h.cols() == C_ && targets.numel() == N);
  const int32_t* tgt = targets.i32();
  for (int64_t i = 0; i < N; ++i) {
    if (tgt[i] >= V_) return absl::InvalidArgumentError(absl::StrCat("target token ", tgt[i], " >= vocab size ", V_));
  }
  const bool training = store.keeping();
  const int64_t chunk = std::min(N, chunk_rows());
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor logits, Tensor::empty({chunk, Vl_}, DType::kF32, MemCategory::kWorkspace));
  Tensor stats;
  if (tp_.size > 1) {
    MEMTRAIN_ASSIGN_OR_RETURN(stats, Tensor::empty({3 * chunk}, DType::kF32, MemCategory::kWorkspace));
  }
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
    cpu::sgemm(false, true, n, Vl_, C_, 1.0f, hc, C_, W, C_, 0.0f, lg, Vl_, pool);
    if (tp_.size == 1) {
      loss += cpu::softmax_cross_entropy(lg, tgt + r0, n, V_, grad_scale, training ? lg : nullptr, nullptr, pool);
    } else {
      MEMTRAIN_ASSIGN_OR_RETURN(double l, vocab_parallel_cross_entropy(lg, tgt + r0, n, grad_scale, training,
                                                                       stats.f32()));
      loss += l;
    }
    if (!training) continue;
    // lg now holds dL/dlogits: dh = dlogits W, dW += dlogits^T h.
    cpu::sgemm(false, false, n, C_, Vl_, 1.0f, lg, Vl_, W, C_, 0.0f, dh.f32() + r0 * C_, C_, pool);
    if (!weight_->frozen) cpu::sgemm(true, false, Vl_, C_, n, 1.0f, lg, Vl_, hc, C_, 1.0f, weight_->grad.f32(), C_, pool);
  }
  if (training) {
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dh_rows, tp_.sum_rows(dh));  // each rank's vocabulary rows contribute to dL/dh
    MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/dh", dh_rows));
  }
  return loss;
}

absl::StatusOr<Tensor> LmHead::backward(ActivationStore& store) { return store.take(name_ + "/dh"); }

absl::StatusOr<Tensor> LmHead::logits(const Tensor& h) const {
  MEMTRAIN_CHECK(h.cols() == C_);
  const int64_t N = h.rows();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor local, Tensor::empty({N, Vl_}, DType::kF32, MemCategory::kActivations));
  cpu::sgemm(false, true, N, Vl_, C_, 1.0f, h.f32(), C_, weight_->value.f32(), C_, 0.0f, local.f32(), Vl_,
             ThreadPool::global());
  if (tp_.size == 1) return local;
  // Every rank's (N, V_r) block, one after the other, then interleaved into rows of V.
  std::vector<int64_t> counts(tp_.size);
  for (int r = 0; r < tp_.size; ++r) {
    const IndexRange part = tp_.part_of(r, V_);
    counts[r] = N * (part.second - part.first);
  }
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor blocks, Tensor::empty({N * V_}, DType::kF32, MemCategory::kActivations));
  MEMTRAIN_RETURN_IF_ERROR(tp_.comm->all_gather_v(local.f32(), blocks.f32(), counts, DType::kF32));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor out, Tensor::empty({N, V_}, DType::kF32, MemCategory::kActivations));
  const float* block = blocks.f32();
  for (int r = 0; r < tp_.size; ++r) {
    const IndexRange part = tp_.part_of(r, V_);
    const int64_t w = part.second - part.first;
    for (int64_t i = 0; i < N; ++i) std::copy_n(block + i * w, w, out.f32() + i * V_ + part.first);
    block += N * w;
  }
  return out;
}

}  // namespace memtrain::model
