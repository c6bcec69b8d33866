// The 8-bit "dynamic" code books of 8-bit optimizers (Dettmers et al., bitsandbytes' create_dynamic_map): 256
// fp32 values in [-1, 1] (signed, for first moments) or [0, 1] (unsigned, for second moments), dense near zero and
// sparse near one: a decimal exponent from 1e-6 to 1 and a linear fraction whose resolution grows with the
// exponent. A block of values is stored as one fp32 absmax and, per value, the index of the code nearest to
// value / absmax.
#pragma once

#include <array>
#include <cstdint>

#include "core/thread_pool.h"

namespace memtrain::cpu {

// 256 codes sorted ascending, and for fast search the index of the last code <= the smallest float of each of the
// 65536 buckets that the top 16 bits of a float (sign, exponent, 7 mantissa bits) form; codes are at least 0.7%
// apart and a bucket is 0.8% wide, so the nearest code is at most a couple of steps from that index.
struct CodeBook {
  std::array<float, 256> code;
  std::array<uint8_t, 65536> bucket_floor;
  float operator[](int i) const { return code[i]; }
  const float* begin() const { return code.data(); }
  const float* end() const { return code.data() + 256; }
};

// The code book as the reference algorithm defines it (linspace midpoints times a power of ten, sorted), each
// value computed in double and rounded once to fp32. Built once; the reference stays valid.
const CodeBook& dynamic_code_book(bool is_signed);

// The index of the code nearest to x (the lower one on a tie); x outside the book's range maps to its end.
uint8_t nearest_code(const CodeBook& book, float x);
// The same by binary search over the codes (the definition the bucket search is tested against).
uint8_t nearest_code_by_search(const CodeBook& book, float x);

// Blockwise: x has n values (any n), blocks of `block` values from x[0]; absmax gets one value per block
// (ceil(n / block)), codes n. An all-zero block gets absmax 0 and the code of 0.
void quantize_blocks(const CodeBook& book, const float* x, int64_t n, int64_t block, uint8_t* codes, float* absmax,
                     ThreadPool& pool);
void dequantize_blocks(const CodeBook& book, const uint8_t* codes, const float* absmax, int64_t n, int64_t block,
                       float* x, ThreadPool& pool);

}  // namespace memtrain::cpu
