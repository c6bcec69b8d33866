// 4-bit NormalFloat (QLoRA, Dettmers et al. 2023; bitsandbytes' quantize_4bit with quant_type="nf4"): a weight is
// stored as the index of the nearest of 16 values (the quantiles of N(0, 1) scaled to [-1, 1], with an exact 0)
// times its block's absmax, blocks of 64 consecutive elements, two codes per byte with the first element in the
// high nibble. Double quantization stores the per-block absmax values themselves in 8 bits: their mean is
// subtracted and the remainders are quantized with the signed 8-bit dynamic code book (core/cpu/dynamic_map.h) in
// blocks of 256, one fp32 absmax per block: 4 + 8/64 + 32/(64*256) = 4.127 bits per weight.
#pragma once

#include <array>
#include <cstdint>

#include "core/thread_pool.h"

namespace memtrain::cpu {

inline constexpr int64_t kNf4Block = 64;
inline constexpr int64_t kNf4AbsmaxBlock = 256;

// The 16 NF4 values, ascending: NF4 code c stands for nf4_values()[c] * absmax.
const std::array<float, 16>& nf4_values();
// The code of the value nearest to x (x in [-1, 1]; the lower one on a tie), by the midpoints between the values.
uint8_t nf4_code(float x);

// x: n values (n even), blocks of 64 from x[0] (the last may be shorter); packed: n / 2 bytes; absmax: one per
// block. An all-zero block gets absmax 0 and the code of 0.
void nf4_quantize(const float* x, int64_t n, uint8_t* packed, float* absmax, ThreadPool& pool);
// Elements [begin, begin + n) of a quantized tensor into out (begin and n even): what a matmul tile needs, without
// the whole tensor in fp32. absmax is the tensor's (one per block of 64, dequantized).
void nf4_dequantize(const uint8_t* packed, const float* absmax, int64_t begin, int64_t n, float* out);

// Double quantization of `blocks` absmax values: offset = their mean, codes = the dynamic-map codes of
// (absmax - offset) / scale, one scale (fp32 absmax) per 256 of them.
struct QuantizedAbsmax {
  float offset = 0;
  int64_t n = 0;
  uint8_t* codes = nullptr;  // n
  float* scales = nullptr;   // ceil(n / 256)
  // A tensor-parallel part of a matrix quantized whole, so that its blocks, offset and scales are the whole
  // matrix's: local block j lies in global row global_rows[j / row_blocks], at global block
  // global_rows[j / row_blocks] * global_row_blocks + first_col_block + j % row_blocks, whose scale is
  // scales[global block / 256] (scales then holds the whole matrix's). Null: the blocks are the whole matrix's.
  const int64_t* global_rows = nullptr;
  int64_t row_blocks = 0, global_row_blocks = 0, first_col_block = 0;
  int64_t global_block(int64_t j) const {
    return global_rows == nullptr ? j
                                  : global_rows[j / row_blocks] * global_row_blocks + first_col_block + j % row_blocks;
  }
};
void quantize_absmax(const float* absmax, QuantizedAbsmax& q, ThreadPool& pool);
// absmax[i] = code_book[codes[i]] * scales[global_block(i) / 256] + offset, for i in [begin, begin + n) into
// absmax[0, n).
void dequantize_absmax(const QuantizedAbsmax& q, int64_t begin, int64_t n, float* absmax);

// A frozen weight matrix W (rows x cols, row-major: nn.Linear's (out, in)), cols even, in NF4 with double-quantized
// absmax (one per 64 consecutive elements of the row-major order).
struct Nf4Matrix {
  int64_t rows = 0, cols = 0;
  const uint8_t* packed = nullptr;  // rows * cols / 2
  QuantizedAbsmax absmax;           // n = ceil(rows * cols / 64)
};
// y (N, rows) = x (N, cols) W^T + beta * y. Each task dequantizes a panel of W's rows (absmax included) into its
// own scratch of about 256 KiB and multiplies it, so the whole W never exists in fp32. Results depend on the
// shapes only (not the thread count).
void nf4_matmul_xwt(const float* x, int64_t N, const Nf4Matrix& w, float beta, float* y, ThreadPool& pool);
// dx (N, cols) = dy (N, rows) W + beta * dx (the gradient through the frozen weight), a panel of W's columns per
// task.
void nf4_matmul_dyw(const float* dy, int64_t N, const Nf4Matrix& w, float beta, float* dx, ThreadPool& pool);

}  // namespace memtrain::cpu
