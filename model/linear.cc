#include "model/linear.h"

#include <vector>

#include "core/cpu/elementwise.h"
#include "absl/strings/str_cat.h"
#include "core/cpu/gemm.h"
#include "core/philox.h"
#include "model/lora.h"

namespace memtrain::model {
namespace {

// SLTrain's S as a dense tensor of this rank's part of W (workspace, for one matmul).
absl::StatusOr<Tensor> sparse_dense(const LinearWeights& w) {
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor W, Tensor::empty(w.in_out ? Shape{w.in, w.out} : Shape{w.out, w.in}, DType::kF32,
                                                    MemCategory::kWorkspace));
  sparse_scatter(w.sparse, W.f32(), W.numel());
  return W;
}

// Whether this rank counts the projection's split tensors in global sums (TpSplit::primary).
bool primary(const LinearWeights& w) { return w.weight ? w.weight->tp.primary : w.sparse.values->tp.primary; }

// y = x W^T, through the NF4 weight when the base is stored 4-bit, or S under SLTrain (the low-rank part is the
// adapter's).
absl::Status matmul(const LinearWeights& w, const float* x, int64_t N, float* y, ThreadPool& pool) {
  Tensor dense;
  if (w.sparse.values) {
    MEMTRAIN_ASSIGN_OR_RETURN(dense, sparse_dense(w));
  } else if (w.weight->nf4) {
    cpu::nf4_matmul_xwt(x, N, w.weight->nf4->matrix, 0.0f, y, pool);
    return absl::OkStatus();
  }
  const float* W = dense.defined() ? dense.f32() : w.weight->value.f32();
  if (w.in_out) {
    cpu::sgemm(false, false, N, w.out, w.in, 1.0f, x, w.in, W, w.out, 0.0f, y, w.out, pool);
  } else {
    cpu::sgemm(false, true, N, w.out, w.in, 1.0f, x, w.in, W, w.in, 0.0f, y, w.out, pool);
  }
  return absl::OkStatus();
}

// The adapter's kernels' view; gradients only in backward (a data-parallel engine points them into its buffers
// only while a unit's backward runs).
LoraAdapter adapter_of(const LinearWeights& w, bool grads = false) {
  const LoraWeights& l = w.lora;
  return {w.in, w.out, l.A->local_shape[0], l.scale, l.A->value.f32(), l.B->value.f32(),
          grads && !l.A->frozen ? l.A->grad.f32() : nullptr, grads && !l.B->frozen ? l.B->grad.f32() : nullptr};
}

absl::StatusOr<Tensor> rank_rows(int64_t N, const LinearWeights& w) {
  return Tensor::empty({N, w.lora.A->local_shape[0]}, DType::kF32, MemCategory::kActivations);
}

// LoRA dropout: data (N, in: this rank's input features) *= mask / (1 - p), the mask drawn from Philox keyed by
// the store's micro-batch and the adapter, at counter n * in_global + global feature, so any mesh (tp splits of
// the features, data-parallel ranks holding other micro-batches) draws what one process does.
void apply_dropout(const LinearWeights& w, const ActivationStore::DropoutStream& d, float* data, int64_t N,
                   ThreadPool& pool) {
  const LoraWeights& l = w.lora;
  const PhiloxKey key = philox_key(d.seed, absl::StrCat(l.A->name, "#", d.micro_batch));
  const float keep = 1.0f / (1.0f - l.dropout);
  pool.parallel_for(N, 8, [&](int64_t n0, int64_t n1) {
    std::vector<float> u(w.in);
    for (int64_t n = n0; n < n1; ++n) {
      philox_uniform(key, n * l.in_global + l.in_offset, w.in, 0.0f, 1.0f, u.data());
      float* row = data + n * w.in;
      for (int64_t i = 0; i < w.in; ++i) row[i] = u[i] < l.dropout ? 0.0f : row[i] * keep;
    }
  });
}

const ActivationStore::DropoutStream* dropout_of(const LinearWeights& w, const ActivationStore& store) {
  return w.lora.dropout > 0 ? store.dropout() : nullptr;
}

// The adapter's input: x, or with dropout in training a new (N, in) tensor (`kept` holds it).
absl::StatusOr<const float*> adapter_input(const LinearWeights& w, const float* x, int64_t N,
                                           const ActivationStore& store, Tensor& kept) {
  const ActivationStore::DropoutStream* d = dropout_of(w, store);
  if (d == nullptr) return x;
  MEMTRAIN_ASSIGN_OR_RETURN(kept, Tensor::empty({N, w.in}, DType::kF32, MemCategory::kActivations));
  std::copy_n(x, N * w.in, kept.f32());
  apply_dropout(w, *d, kept.f32(), N, ThreadPool::global());
  return static_cast<const float*>(kept.f32());
}

// y += scale * (x A^T) B^T (x shown to the store's input observer first). On a row-parallel projection x A^T is
// this rank's part of a sum over tp and B is whole: adding its product to the partial output, which is summed over
// tp next, adds the whole update once.
absl::Status add_adapter_output(const LinearWeights& w, const float* x, int64_t N, float* y, ThreadPool& pool,
                                const ActivationStore& store) {
  if (w.lora.A == nullptr) return absl::OkStatus();
  if (w.weight != nullptr) {
    MEMTRAIN_RETURN_IF_ERROR(store.observe_input({w.weight, x, N, w.in, w.lora.in_offset, w.lora.in_global}));
  }
  Tensor dropped;
  MEMTRAIN_ASSIGN_OR_RETURN(const float* in, adapter_input(w, x, N, store, dropped));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor h, rank_rows(N, w));
  lora_forward(adapter_of(w), in, N, h.f32(), y, pool);
  return absl::OkStatus();
}

absl::Status base_backward_weight(const LinearWeights& w, const float* x, const float* dy, int64_t N,
                                  ThreadPool& pool) {
  if (w.sparse.values) {
    MEMTRAIN_RETURN_IF_ERROR(
        sparse_values_grad(w.sparse, x, dy, N, w.in, w.out, w.in_out, w.sparse.values->grad.f32(), pool));
  } else if (!w.weight->frozen) {
    float* dW = w.weight->grad.f32();
    if (w.in_out) {
      cpu::sgemm(true, false, w.in, w.out, N, 1.0f, x, w.in, dy, w.out, 1.0f, dW, w.out, pool);
    } else {
      cpu::sgemm(true, false, w.out, w.in, N, 1.0f, dy, w.out, x, w.in, 1.0f, dW, w.in, pool);
    }
  }
  if (w.bias && !w.bias->frozen) cpu::bias_backward(dy, N, w.out, w.bias->grad.f32(), pool);
  return absl::OkStatus();
}

// The adapter's weight gradients need h = x A^T and dh = scale * dy B whole: a row-parallel rank holds a part of
// the sum h is, a column-parallel one a part of dh (its output features'). They are summed over tp here, at once,
// so that a deferred weight gradient does no communication. Ranks that share a kv head hold the same dy and B
// rows: only the primary one adds its dh. Returns {h, dh} for dB += scale * dy^T h and dA += dh^T x.
absl::StatusOr<std::pair<Tensor, Tensor>> adapter_grad_inputs(const LinearWeights& w, const float* x,
                                                              const float* dy, int64_t N, ThreadPool& pool) {
  // (x is the adapter's input: with dropout, the dropped one.)
  const LoraWeights& l = w.lora;
  const int64_t r = l.A->local_shape[0];
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor h, rank_rows(N, w));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dh, rank_rows(N, w));
  cpu::sgemm(false, true, N, r, w.in, 1.0f, x, w.in, l.A->value.f32(), w.in, 0.0f, h.f32(), r, pool);
  cpu::sgemm(false, false, N, r, w.out, l.scale, dy, w.out, l.B->value.f32(), r, 0.0f, dh.f32(), r, pool);
  if (l.row) {
    MEMTRAIN_RETURN_IF_ERROR(l.tp.sum(h));
  } else if (l.tp.size > 1) {
    if (!primary(w)) dh.fill_zero();
    MEMTRAIN_RETURN_IF_ERROR(l.tp.sum(dh));
  }
  return std::pair{std::move(h), std::move(dh)};
}

void adapter_backward_weight(const LinearWeights& w, const float* x, const float* dy, const float* h,
                             const float* dh, int64_t N, ThreadPool& pool) {
  const LoraAdapter a = adapter_of(w, /*grads=*/true);
  if (a.dB) cpu::sgemm(true, false, a.out, a.r, N, a.scale, dy, a.out, h, a.r, 1.0f, a.dB, a.r, pool);
  if (a.dA) cpu::sgemm(true, false, a.r, a.in, N, 1.0f, dh, a.r, x, a.in, 1.0f, a.dA, a.in, pool);
}

}  // namespace

LinearWeights make_linear(ParamSet& params, const std::string& prefix, int64_t in, int64_t out, bool bias,
                          bool in_out, float init_std, const TensorParallel& tp, LinearSplit split) {
  if (split.ranges.empty()) split.ranges = {{0, split.kind == LinearSplit::kColumn ? out : in}};
  int64_t local = 0;
  for (const IndexRange& r : split.ranges) local += r.second - r.first;
  const bool column = split.kind == LinearSplit::kColumn;
  LinearWeights w;
  w.in = column ? in : local;
  w.out = column ? local : out;
  w.in_out = in_out;
  // The split dimension of the weight: outputs are dim 1 of (in, out) and dim 0 of (out, in).
  const int dim = (column == in_out) ? 1 : 0;
  const TpSplit a_split = column ? TpSplit::whole(tp) : TpSplit::along(1, split.ranges);
  const TpSplit b_split = column ? TpSplit::along(0, split.ranges, split.primary) : TpSplit::whole(tp);
  // nn.Linear's default initialisation (Kaiming-uniform, bound 1 / sqrt(in)): LoRA's A, SLTrain's A and S.
  const ParamInit kaiming{ParamInit::kUniform, 1.0f / std::sqrt(static_cast<float>(in))};
  // An adapter (LoRA's, or SLTrain's trainable factors); A is registered before B (the order checkpoints list).
  auto low_rank = [&](Param* A, Param* B, float scale) {
    w.lora.A = A;
    w.lora.B = B;
    w.lora.scale = scale;
    w.lora.row = !column;
    w.lora.tp = tp;
    w.lora.in_global = in;
    w.lora.in_offset = column ? 0 : split.ranges.front().first;
  };
  const Shape shape = in_out ? Shape{in, out} : Shape{out, in};
  if (const SlTrainShape* sl = params.sltrain()) {
    MEMTRAIN_CHECK_MSG(params.lora() == nullptr, "SLTrain and LoRA do not combine");
    w.sparse = make_sparse_weight(params, prefix, shape, TpSplit::along(dim, split.ranges, split.primary), sl->delta,
                                  kaiming.std);
    Param* A = &params.add(prefix + ".sltrain.A", {sl->r, in}, ParamKind::kWeight, kaiming, a_split);
    Param* B =
        &params.add(prefix + ".sltrain.B", {out, sl->r}, ParamKind::kWeight, ParamInit{ParamInit::kZeros}, b_split);
    low_rank(A, B, sl->scale);
  } else {
    w.weight = &params.add(prefix + ".weight", shape, ParamKind::kWeight, ParamInit{ParamInit::kNormal, init_std},
                           TpSplit::along(dim, split.ranges, split.primary));
    w.weight->projection = true;
    w.weight->in_out = in_out;
  }
  if (bias) {
    const TpSplit bias_split = column ? TpSplit::along(0, split.ranges, split.primary) : TpSplit::whole(tp);
    w.bias = &params.add(prefix + ".bias", {out}, ParamKind::kBias, ParamInit{ParamInit::kZeros}, bias_split);
  }
  const LoraSpec* lora = params.lora();
  if (lora != nullptr && lora->targets_module(prefix.substr(prefix.rfind('.') + 1))) {
    // PEFT's initialisation: A as nn.Linear's default, B zero.
    Param* A = &params.add_adapter(prefix + ".lora_A.weight", {lora->r, in}, kaiming, a_split, !lora->fa);
    Param* B = &params.add_adapter(prefix + ".lora_B.weight", {out, lora->r}, ParamInit{ParamInit::kZeros}, b_split,
                                   /*trainable=*/true);
    low_rank(A, B, lora->scale());
    w.lora.dropout = static_cast<float>(lora->dropout);
  }
  return w;
}

absl::Status linear_forward(const LinearWeights& w, const float* x, int64_t N, float* y, ThreadPool& pool,
                            const ActivationStore& store) {
  MEMTRAIN_RETURN_IF_ERROR(matmul(w, x, N, y, pool));
  if (w.bias) cpu::add_bias(y, w.bias->value.f32(), N, w.out, pool);
  return add_adapter_output(w, x, N, y, pool, store);
}

absl::StatusOr<Tensor> row_parallel_forward(const LinearWeights& w, const float* x, int64_t N, ThreadPool& pool,
                                            const TensorParallel& tp, const ActivationStore& store) {
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor partial, Tensor::empty({N, w.out}, DType::kF32, MemCategory::kActivations));
  MEMTRAIN_RETURN_IF_ERROR(matmul(w, x, N, partial.f32(), pool));
  MEMTRAIN_RETURN_IF_ERROR(add_adapter_output(w, x, N, partial.f32(), pool, store));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor y, tp.sum_rows(partial));
  if (w.bias) cpu::add_bias(y.f32(), w.bias->value.f32(), y.rows(), w.out, pool);
  return y;
}

absl::Status linear_backward(const LinearWeights& w, const Tensor& x, const Tensor& dy, int64_t N, float* dx,
                             ActivationStore& store, bool accumulate_dx) {
  std::pair<Tensor, Tensor> h_dh;
  Tensor dropped;  // the adapter's input with dropout, when it runs
  if (w.lora.A != nullptr) {
    MEMTRAIN_ASSIGN_OR_RETURN(const float* in, adapter_input(w, x.f32(), N, store, dropped));
    MEMTRAIN_ASSIGN_OR_RETURN(h_dh, adapter_grad_inputs(w, in, dy.f32(), N, ThreadPool::global()));
  }
  MEMTRAIN_RETURN_IF_ERROR(store.weight_grad([w, x, dy, N, h_dh, dropped] {
    ThreadPool& pool = ThreadPool::global();
    MEMTRAIN_RETURN_IF_ERROR(base_backward_weight(w, x.f32(), dy.f32(), N, pool));
    if (w.lora.A != nullptr) {
      const float* in = dropped.defined() ? dropped.f32() : x.f32();
      adapter_backward_weight(w, in, dy.f32(), h_dh.first.f32(), h_dh.second.f32(), N, pool);
    }
    return absl::OkStatus();
  }));
  if (dx) return linear_backward_input(w, dy.f32(), N, dx, ThreadPool::global(), accumulate_dx, store);
  return absl::OkStatus();
}

absl::Status linear_backward_input(const LinearWeights& w, const float* dy, int64_t N, float* dx, ThreadPool& pool,
                                   bool accumulate_dx, const ActivationStore& store) {
  const float beta = accumulate_dx ? 1.0f : 0.0f;
  Tensor dense;  // SLTrain's S, rebuilt for this matmul
  if (w.sparse.values) {
    MEMTRAIN_ASSIGN_OR_RETURN(dense, sparse_dense(w));
  }
  const float* W = dense.defined() ? dense.f32() : w.weight->nf4 ? nullptr : w.weight->value.f32();
  if (W == nullptr) {
    cpu::nf4_matmul_dyw(dy, N, w.weight->nf4->matrix, beta, dx, pool);
  } else if (w.in_out) {
    cpu::sgemm(false, true, N, w.in, w.out, 1.0f, dy, w.out, W, w.out, beta, dx, w.in, pool);
  } else {
    cpu::sgemm(false, false, N, w.in, w.out, 1.0f, dy, w.out, W, w.in, beta, dx, w.in, pool);
  }
  if (w.lora.A == nullptr) return absl::OkStatus();
  // dx += (scale * dy B) A: this rank's part of a column-parallel dx (the layer sums it over tp), or a row-parallel
  // rank's columns of it.
  const LoraAdapter a = adapter_of(w);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dh, rank_rows(N, w));
  cpu::sgemm(false, false, N, a.r, a.out, a.scale, dy, a.out, a.B, a.r, 0.0f, dh.f32(), a.r, pool);
  const ActivationStore::DropoutStream* d = dropout_of(w, store);
  if (d == nullptr) {
    cpu::sgemm(false, false, N, a.in, a.r, 1.0f, dh.f32(), a.r, a.A, a.in, 1.0f, dx, a.in, pool);
    return absl::OkStatus();
  }
  // Through the dropout: the same mask and scale on the gradient.
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor g, Tensor::empty({N, a.in}, DType::kF32, MemCategory::kActivations));
  cpu::sgemm(false, false, N, a.in, a.r, 1.0f, dh.f32(), a.r, a.A, a.in, 0.0f, g.f32(), a.in, pool);
  apply_dropout(w, *d, g.f32(), N, pool);
  cpu::add_inplace(dx, g.f32(), N * a.in, pool);
  return absl::OkStatus();
}

}  // namespace memtrain::model
