// AdamW kernel, vectorised with AVX2. Each line mirrors one torch op of _single_tensor_adamw: scalars are formed in
// double as Python forms them and rounded to fp32 where torch's CPU kernels round them; tensor arithmetic is fp32
// with torch's rounding points (add(alpha=) is a fused multiply-add in torch's vectorised kernel; addcmul and
// addcdiv are not). The build has no -ffp-contract=fast (-std=c++20), so the compiler adds no FMAs of its own.
#include "core/cpu/adamw.h"

#include <cmath>

#include "core/cpu/vec_math.h"
#include "core/status.h"

namespace memtrain::cpu {

void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, int64_t step, ThreadPool& pool) {
  MEMTRAIN_CHECK(step >= 1 && n >= 0);
  const double lr_d = lr, b1 = beta1, b2 = beta2;
  const double bias_correction1 = 1.0 - std::pow(b1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(b2, static_cast<double>(step));
  const __m256 decay = _mm256_set1_ps(static_cast<float>(1.0 - lr_d * weight_decay));  // param.mul_(1 - lr * wd)
  const __m256 beta1v = _mm256_set1_ps(beta1), beta2v = _mm256_set1_ps(beta2);
  const __m256 one_m_b1 = _mm256_set1_ps(static_cast<float>(1.0 - b1));
  const __m256 one_m_b2 = _mm256_set1_ps(static_cast<float>(1.0 - b2));
  const __m256 bc2_sqrt = _mm256_set1_ps(static_cast<float>(std::sqrt(bias_correction2)));
  const __m256 epsv = _mm256_set1_ps(eps);
  const __m256 neg_step_size = _mm256_set1_ps(static_cast<float>(-(lr_d / bias_correction1)));
  constexpr int64_t W = vec::kWidth;
  pool.parallel_for(n, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i += W) {
      const int64_t k = i1 - i;
      const __m256 g = vec::load(grad + i, k);
      const __m256 p = _mm256_mul_ps(vec::load(param + i, k), decay);
      // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
      const __m256 mv = _mm256_fmadd_ps(g, one_m_b1, _mm256_mul_ps(vec::load(m + i, k), beta1v));
      // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2): v + (value * g) * g
      const __m256 vv = _mm256_add_ps(_mm256_mul_ps(vec::load(v + i, k), beta2v),
                                      _mm256_mul_ps(_mm256_mul_ps(one_m_b2, g), g));
      // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
      const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vv), bc2_sqrt), epsv);
      // param.addcdiv_(exp_avg, denom, value=-step_size): p + (value * m) / denom
      const __m256 pn = _mm256_add_ps(p, _mm256_div_ps(_mm256_mul_ps(neg_step_size, mv), denom));
      vec::store(m + i, k, mv);
      vec::store(v + i, k, vv);
      vec::store(param + i, k, pn);
    }
  });
}

}  // namespace memtrain::cpu
