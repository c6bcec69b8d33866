#include "model/norm.h"

#include "core/cpu/layer_norm.h"
#include "core/cpu/rms_norm.h"

namespace memtrain::model {

LayerNorm::LayerNorm(ParamSet& params, std::string name, int64_t C, bool bias, float eps, const TensorParallel& tp)
    : name_(std::move(name)), C_(C), eps_(eps), tp_(tp) {
  weight_ = &params.add(name_ + ".weight", {C}, ParamKind::kNorm, ParamInit{ParamInit::kOnes}, TpSplit::whole(tp));
  bias_ = bias ? &params.add(name_ + ".bias", {C}, ParamKind::kNorm, ParamInit{ParamInit::kZeros}, TpSplit::whole(tp))
               : nullptr;
}

absl::StatusOr<Tensor> LayerNorm::forward(const Tensor& x, ActivationStore& store) const {
  MEMTRAIN_CHECK(x.cols() == C_);
  const int64_t N = x.rows();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor y, Tensor::empty_like(x, MemCategory::kActivations));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor mean, Tensor::empty({N}, DType::kF32, MemCategory::kActivations));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor rstd, Tensor::empty({N}, DType::kF32, MemCategory::kActivations));
  cpu::layer_norm_forward(x.f32(), weight_->value.f32(), bias_ ? bias_->value.f32() : nullptr, eps_, N, C_, y.f32(),
                          mean.f32(), rstd.f32(), ThreadPool::global());
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/x", x));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/mean", mean));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/rstd", rstd));
  return y;
}

absl::StatusOr<Tensor> LayerNorm::backward(const Tensor& dy, ActivationStore& store) {
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, store.take(name_ + "/x"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor mean, store.take(name_ + "/mean"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor rstd, store.take(name_ + "/rstd"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, Tensor::empty_like(dy, MemCategory::kActivations));
  // With SP the kernel adds this rank's rows' part into zeros, then the parts are summed over tp. A frozen norm's
  // gradient goes into the same scratch and is dropped.
  Tensor part;
  if (tp_.sequence_parallel || weight_->frozen) {
    MEMTRAIN_ASSIGN_OR_RETURN(part, Tensor::zeros({2, C_}, DType::kF32, MemCategory::kWorkspace));
  }
  float* dw = part.defined() ? part.f32() : weight_->grad.f32();
  float* db = !bias_ ? nullptr : part.defined() ? part.f32() + C_ : bias_->grad.f32();
  cpu::layer_norm_backward(dy.f32(), x.f32(), mean.f32(), rstd.f32(), weight_->value.f32(), x.rows(), C_, dx.f32(), dw,
                           db, ThreadPool::global());
  if (part.defined() && !weight_->frozen) {
    MEMTRAIN_RETURN_IF_ERROR(
        tp_.add_grad_sums(part, {{weight_->grad.f32(), C_}, {bias_ ? bias_->grad.f32() : nullptr, bias_ ? C_ : 0}}));
  }
  return dx;
}

RmsNorm::RmsNorm(ParamSet& params, std::string name, int64_t C, float eps, const TensorParallel& tp)
    : name_(std::move(name)), C_(C), eps_(eps), tp_(tp) {
  weight_ = &params.add(name_ + ".weight", {C}, ParamKind::kNorm, ParamInit{ParamInit::kOnes}, TpSplit::whole(tp));
}

absl::StatusOr<Tensor> RmsNorm::forward(const Tensor& x, ActivationStore& store) const {
  MEMTRAIN_CHECK(x.cols() == C_);
  const int64_t N = x.rows();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor y, Tensor::empty_like(x, MemCategory::kActivations));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor rstd, Tensor::empty({N}, DType::kF32, MemCategory::kActivations));
  cpu::rms_norm_forward(x.f32(), weight_->value.f32(), eps_, N, C_, y.f32(), rstd.f32(), ThreadPool::global());
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/x", x));
  MEMTRAIN_RETURN_IF_ERROR(store.save(name_ + "/rstd", rstd));
  return y;
}

absl::StatusOr<Tensor> RmsNorm::backward(const Tensor& dy, ActivationStore& store) {
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, store.take(name_ + "/x"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor rstd, store.take(name_ + "/rstd"));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx, Tensor::empty_like(dy, MemCategory::kActivations));
  Tensor part;  // with SP, this rank's rows' part of the weight gradient; a frozen norm's, dropped
  if (tp_.sequence_parallel || weight_->frozen) {
    MEMTRAIN_ASSIGN_OR_RETURN(part, Tensor::zeros({C_}, DType::kF32, MemCategory::kWorkspace));
  }
  cpu::rms_norm_backward(dy.f32(), x.f32(), rstd.f32(), weight_->value.f32(), x.rows(), C_, dx.f32(),
                         part.defined() ? part.f32() : weight_->grad.f32(), ThreadPool::global());
  if (part.defined() && !weight_->frozen) MEMTRAIN_RETURN_IF_ERROR(tp_.add_grad_sums(part, {{weight_->grad.f32(), C_}}));
  return dx;
}

}  // namespace memtrain::model
