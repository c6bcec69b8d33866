// The inner loops behind kernel_table.h, each written once as a template over the vector traits V of simd.h and
// instantiated by make_table<V>() in two translation units: kernels_avx2.cc (baseline flags) and kernels_avx512.cc
// (compiled for AVX-512). Every step outside a sum is an exactly rounded lane-wise op, so the two widths give the
// same bits everywhere except where a sum's lane count changes its order (norms, cross-entropy, sum_squares).
// Nothing here may call a non-template inline function or a standard-library template: a copy compiled for
// AVX-512 could then be the one the linker keeps for the baseline code too (std::sqrt(float) and std::log(double)
// are fine: the first always inlines to one instruction, the second is the C library's).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/cpu/kernel_table.h"
#include "core/cpu/simd.h"

namespace memtrain::cpu::simd {

// ---- GELU, tanh approximation. tanh is rewritten through a sigmoid, 0.5 * (1 + tanh(u)) = sigmoid(2u), which
// needs one exp and one division and has no cancellation for small |u| or in the tails.
inline constexpr float kTwoSqrt2OverPi = 1.5957691216057308f;  // 2 * sqrt(2 / pi): sigmoid(2u) absorbs the 2
inline constexpr float kGeluCubic = 0.044715f;

// 2u = 2 sqrt(2/pi) (x + 0.044715 x^3), so that 0.5 * (1 + tanh(u)) = sigmoid(2u).
template <class V>
typename V::F gelu_two_u(typename V::F x) {
  const typename V::F inner = V::mul(x, V::fmadd(V::set1(kGeluCubic), V::mul(x, x), V::set1(1.0f)));
  return V::mul(V::set1(kTwoSqrt2OverPi), inner);
}

template <class V>
void gelu_forward(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += V::kWidth) {
    const typename V::F xv = V::load(x + i, n - i);
    V::store(y + i, n - i, V::mul(xv, sigmoid<V>(gelu_two_u<V>(xv))));
  }
}

// d/dx [x s] = s + x * ds/dx, ds/dx = 2 s (1 - s) * sqrt(2/pi) (1 + 3 * 0.044715 x^2) since 1 - tanh^2 = 4 s (1 - s).
template <class V>
void gelu_backward(const float* dy, const float* x, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; i += V::kWidth) {
    const int64_t k = n - i;
    const typename V::F xv = V::load(x + i, k);
    typename V::F s, one_minus_s;
    sigmoid_and_complement<V>(gelu_two_u<V>(xv), &s, &one_minus_s);
    const typename V::F du =
        V::mul(V::set1(kTwoSqrt2OverPi), V::fmadd(V::set1(3.0f * kGeluCubic), V::mul(xv, xv), V::set1(1.0f)));
    const typename V::F grad = V::fmadd(xv, V::mul(V::mul(s, one_minus_s), du), s);
    V::store(dx + i, k, V::mul(V::load(dy + i, k), grad));  // dx may alias dy or x: both were read above
  }
}

// ---- SwiGLU: y = silu(gate) * up, silu(g) = g s with s = sigmoid(g); silu'(g) = s + g s (1 - s).
template <class V>
void swiglu_forward(const float* gate, const float* up, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += V::kWidth) {
    const int64_t k = n - i;
    const typename V::F g = V::load(gate + i, k);
    V::store(y + i, k, V::mul(V::mul(g, sigmoid<V>(g)), V::load(up + i, k)));
  }
}

template <class V>
void swiglu_backward(const float* dy, const float* gate, const float* up, float* dgate, float* dup, int64_t n) {
  for (int64_t i = 0; i < n; i += V::kWidth) {
    const int64_t k = n - i;
    const typename V::F g = V::load(gate + i, k), u = V::load(up + i, k), d = V::load(dy + i, k);
    typename V::F s, one_minus_s;
    sigmoid_and_complement<V>(g, &s, &one_minus_s);
    const typename V::F silu = V::mul(g, s);
    const typename V::F dsilu = V::fmadd(silu, one_minus_s, s);
    V::store(dgate + i, k, V::mul(V::mul(d, u), dsilu));
    V::store(dup + i, k, V::mul(d, silu));
  }
}

// ---- AdamW, one torch op per line of _single_tensor_adamw (see adamw.cc for the rounding points).
template <class V>
void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWScalars& s) {
  using F = typename V::F;
  const F decay = V::set1(s.decay), beta1 = V::set1(s.beta1), beta2 = V::set1(s.beta2);
  const F one_m_b1 = V::set1(s.one_minus_beta1), one_m_b2 = V::set1(s.one_minus_beta2);
  const F bc2_sqrt = V::set1(s.bias_correction2_sqrt), eps = V::set1(s.eps), neg_step = V::set1(s.neg_step_size);
  for (int64_t i = 0; i < n; i += V::kWidth) {
    const int64_t k = n - i;
    const F g = V::load(grad + i, k);
    const F p = V::mul(V::load(param + i, k), decay);                       // param.mul_(1 - lr * wd)
    const F mv = V::fmadd(g, one_m_b1, V::mul(V::load(m + i, k), beta1));   // exp_avg.mul_(b1).add_(g, alpha=1-b1)
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2): v + (value * g) * g
    const F vv = V::add(V::mul(V::load(v + i, k), beta2), V::mul(V::mul(one_m_b2, g), g));
    const F denom = V::add(V::div(V::sqrt(vv), bc2_sqrt), eps);  // (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
    // param.addcdiv_(exp_avg, denom, value=-step_size): p + (value * m) / denom
    const F pn = V::add(p, V::div(V::mul(neg_step, mv), denom));
    V::store(m + i, k, mv);
    V::store(v + i, k, vv);
    V::store(param + i, k, pn);
  }
}

// ---- Row sums shared by the norms: two vector accumulators, a fixed order for a given C and width, and shorter
// dependency chains than one.
template <class V>
float row_sum(const float* x, int64_t C) {
  constexpr int64_t W = V::kWidth;
  typename V::F a0 = V::zero(), a1 = V::zero();
  int64_t c = 0;
  for (; c + 2 * W <= C; c += 2 * W) {
    a0 = V::add(a0, V::loadu(x + c));
    a1 = V::add(a1, V::loadu(x + c + W));
  }
  for (; c < C; c += W) a0 = V::add(a0, V::load(x + c, C - c));
  return V::hsum(V::add(a0, a1));
}

// Sum of (x - m)^2: the two-pass variance, which keeps its precision when |mean| >> std.
template <class V>
float row_centered_sq(const float* x, float m, int64_t C) {
  constexpr int64_t W = V::kWidth;
  const typename V::F mv = V::set1(m);
  typename V::F a0 = V::zero(), a1 = V::zero();
  int64_t c = 0;
  for (; c + 2 * W <= C; c += 2 * W) {
    const typename V::F d0 = V::sub(V::loadu(x + c), mv), d1 = V::sub(V::loadu(x + c + W), mv);
    a0 = V::fmadd(d0, d0, a0);
    a1 = V::fmadd(d1, d1, a1);
  }
  for (; c < C; c += W) {
    // Masked-off lanes load 0; subtracting the mean there would add m^2, so mask the difference too.
    const typename V::F d = V::keep(V::sub(V::load(x + c, C - c), mv), C - c);
    a0 = V::fmadd(d, d, a0);
  }
  return V::hsum(V::add(a0, a1));
}

template <class V>
float row_sum_sq(const float* x, int64_t C) {
  constexpr int64_t W = V::kWidth;
  typename V::F a0 = V::zero(), a1 = V::zero();
  int64_t c = 0;
  for (; c + 2 * W <= C; c += 2 * W) {
    const typename V::F x0 = V::loadu(x + c), x1 = V::loadu(x + c + W);
    a0 = V::fmadd(x0, x0, a0);
    a1 = V::fmadd(x1, x1, a1);
  }
  for (; c < C; c += W) {
    const typename V::F xv = V::load(x + c, C - c);
    a0 = V::fmadd(xv, xv, a0);
  }
  return V::hsum(V::add(a0, a1));
}

// ---- LayerNorm: y = (x - mean) * rstd * weight + bias, biased variance.
template <class V>
void layer_norm_forward(const float* x, const float* weight, const float* bias, float eps, int64_t rows, int64_t C,
                        float* y, float* mean, float* rstd) {
  for (int64_t r = 0; r < rows; ++r, x += C, y += C) {
    const float m = row_sum<V>(x, C) / static_cast<float>(C);
    const float var = row_centered_sq<V>(x, m, C) / static_cast<float>(C);
    const float s = 1.0f / std::sqrt(var + eps);
    mean[r] = m;
    rstd[r] = s;
    const typename V::F mv = V::set1(m), sv = V::set1(s);
    for (int64_t c = 0; c < C; c += V::kWidth) {
      const int64_t k = C - c;
      const typename V::F xhat = V::mul(V::sub(V::load(x + c, k), mv), sv);
      V::store(y + c, k, bias ? V::fmadd(xhat, V::load(weight + c, k), V::load(bias + c, k))
                              : V::mul(xhat, V::load(weight + c, k)));
    }
  }
}

// With xhat = (x - mean) * rstd and g = dy * weight:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  dweight += dy * xhat,  dbias += dy.
template <class V>
void layer_norm_backward(const float* dy, const float* x, const float* mean, const float* rstd, const float* weight,
                         int64_t rows, int64_t C, float* dx, float* pw, float* pb) {
  using F = typename V::F;
  for (int64_t r = 0; r < rows; ++r, dy += C, x += C, dx += C) {
    const F mv = V::set1(mean[r]), sv = V::set1(rstd[r]);
    F sg = V::zero(), sgx = V::zero();
    for (int64_t c = 0; c < C; c += V::kWidth) {
      const int64_t k = C - c;
      const F g = V::mul(V::load(dy + c, k), V::load(weight + c, k));  // 0 in masked-off lanes
      const F xhat = V::mul(V::sub(V::load(x + c, k), mv), sv);
      sg = V::add(sg, g);
      sgx = V::fmadd(g, xhat, sgx);
    }
    const float inv_c = 1.0f / static_cast<float>(C);
    const F mean_g = V::set1(V::hsum(sg) * inv_c), mean_gx = V::set1(V::hsum(sgx) * inv_c);
    for (int64_t c = 0; c < C; c += V::kWidth) {
      const int64_t k = C - c;
      const F dyv = V::load(dy + c, k);
      const F xhat = V::mul(V::sub(V::load(x + c, k), mv), sv);
      const F g = V::mul(dyv, V::load(weight + c, k));
      V::store(dx + c, k, V::mul(sv, V::sub(V::sub(g, mean_g), V::mul(xhat, mean_gx))));
      V::store(pw + c, k, V::fmadd(dyv, xhat, V::load(pw + c, k)));  // dx may alias dy: dy + c was read above
      if (pb) V::store(pb + c, k, V::add(dyv, V::load(pb + c, k)));
    }
  }
}

// ---- RMSNorm: y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps).
template <class V>
void rms_norm_forward(const float* x, const float* weight, float eps, int64_t rows, int64_t C, float* y,
                      float* rstd) {
  for (int64_t r = 0; r < rows; ++r, x += C, y += C) {
    const float s = 1.0f / std::sqrt(row_sum_sq<V>(x, C) / static_cast<float>(C) + eps);
    rstd[r] = s;
    const typename V::F sv = V::set1(s);
    for (int64_t c = 0; c < C; c += V::kWidth) {
      const int64_t k = C - c;
      V::store(y + c, k, V::mul(V::mul(V::load(x + c, k), sv), V::load(weight + c, k)));
    }
  }
}

// With g = dy * weight: dx = rstd * g - x * rstd^3 * mean(g * x),  dweight += dy * x * rstd.
template <class V>
void rms_norm_backward(const float* dy, const float* x, const float* rstd, const float* weight, int64_t rows,
                       int64_t C, float* dx, float* pw) {
  using F = typename V::F;
  for (int64_t r = 0; r < rows; ++r, dy += C, x += C, dx += C) {
    const float s = rstd[r];
    F acc = V::zero();
    for (int64_t c = 0; c < C; c += V::kWidth) {
      const int64_t k = C - c;
      acc = V::fmadd(V::mul(V::load(dy + c, k), V::load(weight + c, k)), V::load(x + c, k), acc);
    }
    const float coef = s * s * s * V::hsum(acc) / static_cast<float>(C);
    const F sv = V::set1(s), cv = V::set1(coef);
    for (int64_t c = 0; c < C; c += V::kWidth) {
      const int64_t k = C - c;
      const F dyv = V::load(dy + c, k), xv = V::load(x + c, k);
      const F g = V::mul(dyv, V::load(weight + c, k));
      V::store(dx + c, k, V::sub(V::mul(sv, g), V::mul(xv, cv)));  // dy + c already read
      V::store(pw + c, k, V::fmadd(dyv, V::mul(xv, sv), V::load(pw + c, k)));
    }
  }
}

// ---- Softmax cross-entropy, one row: max, then sum of exp (stored into d when wanted), then scale.
template <class V>
float row_max(const float* x, int64_t n) {
  typename V::F m = V::set1(-__builtin_inff());
  int64_t c = 0;
  for (; c + V::kWidth <= n; c += V::kWidth) m = V::max(m, V::loadu(x + c));
  float r = V::hmax(m);
  for (; c < n; ++c) r = r < x[c] ? x[c] : r;  // std::max's rule, spelled out (see the top of the file)
  return r;
}

// Sum of exp(x - mx); when e != nullptr also stores the exps there (e may alias x).
template <class V>
float row_exp_sum(const float* x, float mx, int64_t n, float* e) {
  constexpr int64_t W = V::kWidth;
  const typename V::F mv = V::set1(mx);
  typename V::F a0 = V::zero(), a1 = V::zero();
  int64_t c = 0;
  for (; c + 2 * W <= n; c += 2 * W) {
    const typename V::F e0 = exp<V>(V::sub(V::loadu(x + c), mv)), e1 = exp<V>(V::sub(V::loadu(x + c + W), mv));
    a0 = V::add(a0, e0);
    a1 = V::add(a1, e1);
    if (e) {
      V::storeu(e + c, e0);
      V::storeu(e + c + W, e1);
    }
  }
  for (; c < n; c += W) {
    const int64_t k = n - c;
    // Masked-off lanes would give exp(0 - mx); mask the result so they add 0.
    const typename V::F ev = V::keep(exp<V>(V::sub(V::load(x + c, k), mv)), k);
    a0 = V::add(a0, ev);
    if (e) V::store(e + c, k, ev);
  }
  return V::hsum(V::add(a0, a1));
}

template <class V>
double cross_entropy_row(const float* x, int32_t target, int64_t n, float grad_scale, float* d) {
  const float mx = row_max<V>(x, n);
  const float xt = x[target];  // read before d (which may alias x) is overwritten
  const float sum = row_exp_sum<V>(x, mx, n, d);
  if (d) {
    const typename V::F f = V::set1(grad_scale / sum);
    for (int64_t c = 0; c < n; c += V::kWidth) V::store(d + c, n - c, V::mul(V::load(d + c, n - c), f));
    d[target] -= grad_scale;
  }
  // In double: log(sum) is small next to mx - xt, and the subtraction should not lose its digits.
  return static_cast<double>(mx) + std::log(static_cast<double>(sum)) - static_cast<double>(xt);
}

// ---- Elementwise (memory bound; one exactly rounded op per element, so every width gives the same bits).
template <class V>
void add(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += V::kWidth)
    V::store(y + i, n - i, V::add(V::load(a + i, n - i), V::load(b + i, n - i)));
}

template <class V>
void add_inplace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += V::kWidth)
    V::store(y + i, n - i, V::add(V::load(y + i, n - i), V::load(x + i, n - i)));
}

template <class V>
void scale_inplace(float* x, float s, int64_t n) {
  const typename V::F sv = V::set1(s);
  for (int64_t i = 0; i < n; i += V::kWidth) V::store(x + i, n - i, V::mul(V::load(x + i, n - i), sv));
}

template <class V>
void add_bias(float* y, const float* bias, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r, y += C)
    for (int64_t c = 0; c < C; c += V::kWidth)
      V::store(y + c, C - c, V::add(V::load(y + c, C - c), V::load(bias + c, C - c)));
}

template <class V>
void column_sums(const float* dy, int64_t rows, int64_t C, float* part) {
  std::memcpy(part, dy, C * sizeof(float));
  for (int64_t r = 1; r < rows; ++r) add_inplace<V>(part, dy + r * C, C);
}

// Four double accumulators; squares of floats are exact in double, only the adds round.
template <class V>
double sum_squares(const float* x, int64_t n) {
  constexpr int64_t W = V::kWidth;
  typename V::D a0 = V::zero_d(), a1 = V::zero_d(), a2 = V::zero_d(), a3 = V::zero_d();
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    const typename V::F u = V::loadu(x + i), w = V::loadu(x + i + W);
    const typename V::D d0 = V::widen_lo(u), d1 = V::widen_hi(u), d2 = V::widen_lo(w), d3 = V::widen_hi(w);
    a0 = V::fmadd_d(d0, d0, a0);
    a1 = V::fmadd_d(d1, d1, a1);
    a2 = V::fmadd_d(d2, d2, a2);
    a3 = V::fmadd_d(d3, d3, a3);
  }
  double s = V::hsum_d(V::add_d(V::add_d(a0, a1), V::add_d(a2, a3)));
  for (; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

// ---- The vector math over arrays, for the accuracy tests.
template <class V>
void exp_array(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += V::kWidth) V::store(y + i, n - i, exp<V>(V::load(x + i, n - i)));
}

template <class V>
void sigmoid_and_complement_array(const float* x, float* s, float* one_minus_s, int64_t n) {
  for (int64_t i = 0; i < n; i += V::kWidth) {
    typename V::F sv, cv;
    sigmoid_and_complement<V>(V::load(x + i, n - i), &sv, &cv);
    V::store(s + i, n - i, sv);
    V::store(one_minus_s + i, n - i, cv);
  }
}

template <class V>
constexpr KernelTable make_table() {
  return {
      .gelu_forward = &gelu_forward<V>,
      .gelu_backward = &gelu_backward<V>,
      .swiglu_forward = &swiglu_forward<V>,
      .swiglu_backward = &swiglu_backward<V>,
      .adamw_step = &adamw_step<V>,
      .layer_norm_forward = &layer_norm_forward<V>,
      .layer_norm_backward = &layer_norm_backward<V>,
      .rms_norm_forward = &rms_norm_forward<V>,
      .rms_norm_backward = &rms_norm_backward<V>,
      .cross_entropy_row = &cross_entropy_row<V>,
      .add = &add<V>,
      .add_inplace = &add_inplace<V>,
      .scale_inplace = &scale_inplace<V>,
      .add_bias = &add_bias<V>,
      .column_sums = &column_sums<V>,
      .sum_squares = &sum_squares<V>,
      .exp = &exp_array<V>,
      .sigmoid_and_complement = &sigmoid_and_complement_array<V>,
  };
}

}  // namespace memtrain::cpu::simd
