#include "model/linear.h"

#include "core/cpu/elementwise.h"
#include "core/cpu/gemm.h"

namespace memtrain::model {

LinearWeights make_linear(ParamSet& params, const std::string& prefix, int64_t in, int64_t out, bool bias,
                          bool in_out, float init_std) {
  LinearWeights w;
  w.in = in;
  w.out = out;
  w.in_out = in_out;
  w.weight = &params.add(prefix + ".weight", in_out ? Shape{in, out} : Shape{out, in}, ParamKind::kWeight,
                         ParamInit{ParamInit::kNormal, init_std});
  if (bias) w.bias = &params.add(prefix + ".bias", {out}, ParamKind::kBias, ParamInit{ParamInit::kZeros});
  return w;
}

void linear_forward(const LinearWeights& w, const float* x, int64_t N, float* y, ThreadPool& pool) {
  const float* W = w.weight->value.f32();
  if (w.in_out) {
    cpu::sgemm(false, false, N, w.out, w.in, 1.0f, x, w.in, W, w.out, 0.0f, y, w.out, pool);
  } else {
    cpu::sgemm(false, true, N, w.out, w.in, 1.0f, x, w.in, W, w.in, 0.0f, y, w.out, pool);
  }
  if (w.bias) cpu::add_bias(y, w.bias->value.f32(), N, w.out, pool);
}

void linear_backward(const LinearWeights& w, const float* x, const float* dy, int64_t N, float* dx, ThreadPool& pool,
                     bool accumulate_dx) {
  const float beta = accumulate_dx ? 1.0f : 0.0f;
  const float* W = w.weight->value.f32();
  float* dW = w.weight->grad.f32();
  if (w.in_out) {
    cpu::sgemm(true, false, w.in, w.out, N, 1.0f, x, w.in, dy, w.out, 1.0f, dW, w.out, pool);
    if (dx) cpu::sgemm(false, true, N, w.in, w.out, 1.0f, dy, w.out, W, w.out, beta, dx, w.in, pool);
  } else {
    cpu::sgemm(true, false, w.out, w.in, N, 1.0f, dy, w.out, x, w.in, 1.0f, dW, w.in, pool);
    if (dx) cpu::sgemm(false, false, N, w.in, w.out, 1.0f, dy, w.out, W, w.in, beta, dx, w.in, pool);
  }
  if (w.bias) cpu::bias_backward(dy, N, w.out, w.bias->grad.f32(), pool);
}

}  // namespace memtrain::model
