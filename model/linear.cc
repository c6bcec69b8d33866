#include "model/linear.h"

#include "core/cpu/elementwise.h"
#include "core/cpu/gemm.h"

namespace memtrain::model {
namespace {
void matmul(const LinearWeights& w, const float* x, int64_t N, float* y, ThreadPool& pool) {
  const float* W = w.weight->value.f32();
  if (w.in_out) {
    cpu::sgemm(false, false, N, w.out, w.in, 1.0f, x, w.in, W, w.out, 0.0f, y, w.out, pool);
  } else {
    cpu::sgemm(false, true, N, w.out, w.in, 1.0f, x, w.in, W, w.in, 0.0f, y, w.out, pool);
  }
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
  w.weight = &params.add(prefix + ".weight", in_out ? Shape{in, out} : Shape{out, in}, ParamKind::kWeight,
                         ParamInit{ParamInit::kNormal, init_std}, TpSplit::along(dim, split.ranges, split.primary));
  if (bias) {
    const TpSplit bias_split = column ? TpSplit::along(0, split.ranges, split.primary) : TpSplit::whole(tp);
    w.bias = &params.add(prefix + ".bias", {out}, ParamKind::kBias, ParamInit{ParamInit::kZeros}, bias_split);
  }
  return w;
}

void linear_forward(const LinearWeights& w, const float* x, int64_t N, float* y, ThreadPool& pool) {
  matmul(w, x, N, y, pool);
  if (w.bias) cpu::add_bias(y, w.bias->value.f32(), N, w.out, pool);
}

absl::StatusOr<Tensor> row_parallel_forward(const LinearWeights& w, const float* x, int64_t N, ThreadPool& pool,
                                            const TensorParallel& tp) {
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor partial, Tensor::empty({N, w.out}, DType::kF32, MemCategory::kActivations));
  matmul(w, x, N, partial.f32(), pool);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor y, tp.sum_rows(partial));
  if (w.bias) cpu::add_bias(y.f32(), w.bias->value.f32(), y.rows(), w.out, pool);
  return y;
}

absl::Status linear_backward(const LinearWeights& w, const Tensor& x, const Tensor& dy, int64_t N, float* dx,
                             ActivationStore& store, bool accumulate_dx) {
  MEMTRAIN_RETURN_IF_ERROR(store.weight_grad([w, x, dy, N] {
    linear_backward_weight(w, x.f32(), dy.f32(), N, ThreadPool::global());
    return absl::OkStatus();
  }));
  if (dx) linear_backward_input(w, dy.f32(), N, dx, ThreadPool::global(), accumulate_dx);
  return absl::OkStatus();
}

void linear_backward_weight(const LinearWeights& w, const float* x, const float* dy, int64_t N, ThreadPool& pool) {
  float* dW = w.weight->grad.f32();
  if (w.in_out) {
    cpu::sgemm(true, false, w.in, w.out, N, 1.0f, x, w.in, dy, w.out, 1.0f, dW, w.out, pool);
  } else {
    cpu::sgemm(true, false, w.out, w.in, N, 1.0f, dy, w.out, x, w.in, 1.0f, dW, w.in, pool);
  }
  if (w.bias) cpu::bias_backward(dy, N, w.out, w.bias->grad.f32(), pool);
}

void linear_backward_input(const LinearWeights& w, const float* dy, int64_t N, float* dx, ThreadPool& pool,
                           bool accumulate_dx) {
  const float beta = accumulate_dx ? 1.0f : 0.0f;
  const float* W = w.weight->value.f32();
  if (w.in_out) {
    cpu::sgemm(false, true, N, w.in, w.out, 1.0f, dy, w.out, W, w.out, beta, dx, w.in, pool);
  } else {
    cpu::sgemm(false, false, N, w.in, w.out, 1.0f, dy, w.out, W, w.in, beta, dx, w.in, pool);
  }
}

}  // namespace memtrain::model
