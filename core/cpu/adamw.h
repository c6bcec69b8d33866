// The AdamW update over one fp32 tensor, operation for operation as torch.optim.AdamW (torch 1.13, single-tensor,
// non-amsgrad) performs it in fp32.
#pragma once

#include <cstdint>

#include "core/cpu/kernel_table.h"
#include "core/thread_pool.h"

namespace memtrain::cpu {

// param, grad, m, v: n elements; step is 1-based. In this order:
//   p *= 1 - lr * weight_decay;  m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g;
//   bc1 = 1 - beta1^step;  bc2 = 1 - beta2^step;  denom = sqrt(v) / sqrt(bc2) + eps;  p -= (lr / bc1) * m / denom.
void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, int64_t step, ThreadPool& pool);
// The fp32 scalars of that update, formed as torch forms them.
AdamWScalars adamw_scalars(float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step);

// 8-bit AdamW (bitsandbytes' blockwise 8-bit Adam): m and v live as codes of the signed and unsigned dynamic code
// books (core/cpu/dynamic_map.h) with one fp32 absmax per block of 256. The n elements are elements
// [offset, offset + n) of a tensor whose blocks start at multiples of 256, so a piece of a sharded tensor has the
// single-process blocks wherever its ends fall on block boundaries. Per block: dequantize m and v, the fp32 update
// above (the same bits as adamw_step on those values), requantize m and v with the block's new absmax.
void adamw8bit_step(float* param, const float* grad, uint8_t* m_codes, float* m_absmax, uint8_t* v_codes,
                    float* v_absmax, int64_t offset, int64_t n, const AdamWScalars& s, ThreadPool& pool);
// Blocks of 256 that elements [offset, offset + n) of a tensor touch.
inline int64_t blocks_touched(int64_t offset, int64_t n, int64_t block = 256) {
  return n == 0 ? 0 : (offset + n - 1) / block - offset / block + 1;
}

}  // namespace memtrain::cpu
