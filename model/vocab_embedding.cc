#include "model/vocab_embedding.h"

#include "core/cpu/embedding.h"

namespace memtrain::model {

VocabEmbedding::VocabEmbedding(ParamSet& params, const std::string& name, int64_t V, int64_t C, float std,
                               const TensorParallel& tp)
    : rows_(tp.part(V)), tp_(tp) {
  weight_ = &params.add(name, {V, C}, ParamKind::kEmbedding, ParamInit{ParamInit::kNormal, std},
                        TpSplit::along(0, {rows_}));
}

absl::StatusOr<Tensor> VocabEmbedding::local_ids(const Tensor& tokens) const {
  if (tp_.size == 1) return tokens;  // every row is here
  const int64_t n = tokens.numel();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor ids, Tensor::empty({n}, DType::kI32, MemCategory::kWorkspace));
  for (int64_t i = 0; i < n; ++i) {
    const int32_t t = tokens.i32()[i];
    ids.i32()[i] = (t >= rows_.first && t < rows_.second) ? static_cast<int32_t>(t - rows_.first) : -1;
  }
  return ids;
}

absl::StatusOr<Tensor> VocabEmbedding::forward(const Tensor& tokens) const {
  const int64_t n = tokens.numel(), C = weight_->local_shape[1];
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor out, Tensor::empty({n, C}, DType::kF32, MemCategory::kActivations));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor ids, local_ids(tokens));
  cpu::embedding_forward(ids.i32(), weight_->value.f32(), n, C, out.f32(), /*accumulate=*/false, ThreadPool::global());
  return tp_.sum_rows(out);  // no-op with one rank
}

absl::Status VocabEmbedding::backward(const Tensor& tokens, const Tensor& dout) {
  if (weight_->frozen) return absl::OkStatus();
  const int64_t n = tokens.numel(), C = weight_->local_shape[1], rows = weight_->local_shape[0];
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor ids, local_ids(tokens));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor full, tp_.gather_rows(dout));  // every token's gradient, for this rank's rows
  cpu::embedding_backward(ids.i32(), full.f32(), n, C, rows, weight_->grad.f32(), ThreadPool::global());
  return absl::OkStatus();
}

}  // namespace memtrain::model
