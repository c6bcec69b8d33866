// AdamW kernel. Each line of the inner loop (simd_kernels.h, AVX2 or AVX-512 through kernel_table()) mirrors one
// torch op of _single_tensor_adamw: scalars are formed here in double as Python forms them and rounded to fp32
// where torch's CPU kernels round them; tensor arithmetic is fp32 with torch's rounding points (add(alpha=) is a
// fused multiply-add in torch's vectorised kernel; addcmul and addcdiv are not). The build has no
// -ffp-contract=fast (-std=c++20), so the compiler adds no FMAs of its own. Every op is lane-wise and exactly
// rounded, so both widths give the same bits.
#include "core/cpu/adamw.h"

#include <cmath>

#include "core/cpu/kernel_table.h"
#include "core/status.h"

namespace memtrain::cpu {

void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, int64_t step, ThreadPool& pool) {
  MEMTRAIN_CHECK(step >= 1 && n >= 0);
  const double lr_d = lr, b1 = beta1, b2 = beta2;
  const double bias_correction1 = 1.0 - std::pow(b1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(b2, static_cast<double>(step));
  const AdamWScalars s{
      .decay = static_cast<float>(1.0 - lr_d * weight_decay),  // param.mul_(1 - lr * weight_decay)
      .beta1 = beta1,
      .beta2 = beta2,
      .one_minus_beta1 = static_cast<float>(1.0 - b1),
      .one_minus_beta2 = static_cast<float>(1.0 - b2),
      .bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2)),
      .eps = eps,
      .neg_step_size = static_cast<float>(-(lr_d / bias_correction1)),
  };
  const auto fn = kernel_table().adamw_step;
  pool.parallel_for(n, 16384, [&](int64_t i0, int64_t i1) {
    fn(param + i0, grad + i0, m + i0, v + i0, i1 - i0, s);
  });
}

}  // namespace memtrain::cpu
