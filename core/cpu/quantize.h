// Blockwise symmetric int8 quantization, the wire format of ZeRO++'s quantized weight gather (qwZ): every block of
// `block` values shares one fp32 scale = max|x| / 127, q = round(x / scale) in [-127, 127], x ~ q * scale.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace memtrain::cpu {

// x: n values, n a multiple of block; q: n; scales: n / block. An all-zero block gets scale 0.
void quantize_int8_blocks(const float* x, int64_t n, int64_t block, int8_t* q, float* scales, ThreadPool& pool);
// x[i] = q[i] * scales[i / block].
void dequantize_int8_blocks(const int8_t* q, const float* scales, int64_t n, int64_t block, float* x,
                            ThreadPool& pool);

}  // namespace memtrain::cpu
