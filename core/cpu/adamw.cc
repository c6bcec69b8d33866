// AdamW kernel. Each line of the inner loop (simd_kernels.h, AVX2 or AVX-512 through kernel_table()) mirrors one
// torch op of _single_tensor_adamw: scalars are formed here in double as Python forms them and rounded to fp32
// where torch's CPU kernels round them; tensor arithmetic is fp32 with torch's rounding points (add(alpha=) is a
// fused multiply-add in torch's vectorised kernel; addcmul and addcdiv are not). The build has no
// -ffp-contract=fast (-std=c++20), so the compiler adds no FMAs of its own. Every op is lane-wise and exactly
// rounded, so both widths give the same bits.
#include "core/cpu/adamw.h"

#include <algorithm>
#include <cmath>

#include "core/cpu/dynamic_map.h"
#include "core/cpu/kernel_table.h"
#include "core/status.h"

namespace memtrain::cpu {

AdamWScalars adamw_scalars(float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  MEMTRAIN_CHECK(step >= 1);
  const double lr_d = lr, b1 = beta1, b2 = beta2;
  const double bias_correction1 = 1.0 - std::pow(b1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(b2, static_cast<double>(step));
  return AdamWScalars{
      .decay = static_cast<float>(1.0 - lr_d * weight_decay),  // param.mul_(1 - lr * weight_decay)
      .beta1 = beta1,
      .beta2 = beta2,
      .one_minus_beta1 = static_cast<float>(1.0 - b1),
      .one_minus_beta2 = static_cast<float>(1.0 - b2),
      .bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2)),
      .eps = eps,
      .neg_step_size = static_cast<float>(-(lr_d / bias_correction1)),
  };
}

void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, int64_t step, ThreadPool& pool) {
  MEMTRAIN_CHECK(n >= 0);
  const AdamWScalars s = adamw_scalars(lr, beta1, beta2, eps, weight_decay, step);
  const auto fn = kernel_table().adamw_step;
  pool.parallel_for(n, 16384, [&](int64_t i0, int64_t i1) {
    fn(param + i0, grad + i0, m + i0, v + i0, i1 - i0, s);
  });
}

void adamw8bit_step(float* param, const float* grad, uint8_t* m_codes, float* m_absmax, uint8_t* v_codes,
                    float* v_absmax, int64_t offset, int64_t n, const AdamWScalars& s, ThreadPool& pool) {
  constexpr int64_t kBlock = 256;
  const CodeBook& signed_book = dynamic_code_book(true);
  const CodeBook& unsigned_book = dynamic_code_book(false);
  const auto fn = kernel_table().adamw_step;
  const int64_t first = offset / kBlock;  // the tensor's block that element 0 lies in
  pool.parallel_for(blocks_touched(offset, n, kBlock), 4, [&](int64_t b0, int64_t b1) {
    float m[kBlock], v[kBlock];
    for (int64_t b = b0; b < b1; ++b) {
      // This piece's elements of tensor block first + b.
      const int64_t i0 = std::max<int64_t>(0, (first + b) * kBlock - offset);
      const int64_t i1 = std::min<int64_t>(n, (first + b + 1) * kBlock - offset), len = i1 - i0;
      for (int64_t i = 0; i < len; ++i) {
        m[i] = signed_book[m_codes[i0 + i]] * m_absmax[b];
        v[i] = unsigned_book[v_codes[i0 + i]] * v_absmax[b];
      }
      fn(param + i0, grad + i0, m, v, len, s);
      // Requantized with the block's new ranges (inside a pool task the pool runs serially).
      quantize_blocks(signed_book, m, len, kBlock, m_codes + i0, m_absmax + b, pool);
      quantize_blocks(unsigned_book, v, len, kBlock, v_codes + i0, v_absmax + b, pool);
    }
  });
}

}  // namespace memtrain::cpu
