#include "core/cpu/dynamic_map.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/status.h"

namespace memtrain::cpu {
namespace {

// Appends scale * the midpoints of linspace(0.1, 1, items), and their negatives when signed, each computed in
// double and rounded once to fp32. (The reference runs these steps as fp32 torch ops, whose rounding depends on
// torch's vectorisation: its values can differ from these in the last bit, which no quantization notices.)
void add_midpoints(std::vector<float>& data, int items, double scale, bool is_signed) {
  const double step = (1.0 - 0.1) / (items - 1);
  for (int sign : {1, -1}) {
    if (sign < 0 && !is_signed) break;
    for (int k = 0; k + 1 < items; ++k) {
      const double lo = 0.1 + step * k, hi = 0.1 + step * (k + 1);
      data.push_back(static_cast<float>(sign * scale * (lo + hi) / 2.0));
    }
  }
}

CodeBook build(bool is_signed) {
  constexpr int kTotalBits = 8, kMaxExponentBits = 7;
  const int non_sign_bits = kTotalBits - 1;  // the reference reserves one bit either way; unsigned doubles the fraction
  const int additional = (1 << (non_sign_bits - kMaxExponentBits)) - 1;
  std::vector<float> data;
  for (int i = 0; i < kMaxExponentBits; ++i) {
    const int shift = i + non_sign_bits - kMaxExponentBits + (is_signed ? 0 : 1);
    add_midpoints(data, (1 << shift) + 1, std::pow(10.0, -(kMaxExponentBits - 1) + i), is_signed);
  }
  if (additional > 0)
    add_midpoints(data, additional + 1, std::pow(10.0, -(kMaxExponentBits - 1) + kMaxExponentBits - 1), is_signed);
  data.push_back(0.0f);
  data.push_back(1.0f);
  MEMTRAIN_CHECK(data.size() <= 256);
  data.resize(256, 0.0f);  // the reference pads with zeros (none are needed at 8 bits)
  std::sort(data.begin(), data.end());
  CodeBook book;
  std::copy(data.begin(), data.end(), book.code.begin());
  for (uint32_t key = 0; key < 65536; ++key) {
    // The bucket's smallest float: for negatives (sign bit set) the bucket runs toward zero, so its smallest value
    // has all low mantissa bits set. NaN buckets get 0 (never searched: x is finite).
    const uint32_t bits = key << 16 | ((key & 0x8000) ? 0xFFFFu : 0u);
    float lo;
    std::memcpy(&lo, &bits, 4);
    const auto it = std::upper_bound(book.code.begin(), book.code.end(), lo);  // first code > lo
    book.bucket_floor[key] = std::isnan(lo) || it == book.code.begin() ? 0 : static_cast<uint8_t>(it - book.code.begin() - 1);
  }
  return book;
}

}  // namespace

const CodeBook& dynamic_code_book(bool is_signed) {
  static const CodeBook kSigned = build(true), kUnsigned = build(false);
  return is_signed ? kSigned : kUnsigned;
}

uint8_t nearest_code_by_search(const CodeBook& book, float x) {
  // The first code >= x, then whichever neighbour is nearer.
  const auto it = std::lower_bound(book.begin(), book.end(), x);
  if (it == book.begin()) return 0;
  if (it == book.end()) return 255;
  const auto hi = static_cast<int>(it - book.begin());
  return static_cast<uint8_t>(x - book[hi - 1] <= book[hi] - x ? hi - 1 : hi);
}

uint8_t nearest_code(const CodeBook& book, float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  int lo = book.bucket_floor[bits >> 16];  // a code <= x (or 0 when x is below every code)
  while (lo < 255 && book.code[lo + 1] <= x) ++lo;
  if (lo == 255 || x <= book.code[lo]) return static_cast<uint8_t>(lo);  // x at or below the first code, or above all
  return static_cast<uint8_t>(x - book.code[lo] <= book.code[lo + 1] - x ? lo : lo + 1);
}

void quantize_blocks(const CodeBook& book, const float* x, int64_t n, int64_t block, uint8_t* codes, float* absmax,
                     ThreadPool& pool) {
  MEMTRAIN_CHECK(block > 0);
  const uint8_t zero = nearest_code(book, 0.0f);
  const int64_t blocks = (n + block - 1) / block;
  pool.parallel_for(blocks, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i0 = b * block, i1 = std::min(n, i0 + block);
      float m = 0.0f;
      for (int64_t i = i0; i < i1; ++i) m = std::max(m, std::fabs(x[i]));
      absmax[b] = m;
      for (int64_t i = i0; i < i1; ++i) codes[i] = m > 0.0f ? nearest_code(book, x[i] / m) : zero;
    }
  });
}

void dequantize_blocks(const CodeBook& book, const uint8_t* codes, const float* absmax, int64_t n, int64_t block,
                       float* x, ThreadPool& pool) {
  MEMTRAIN_CHECK(block > 0);
  pool.parallel_for(n, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) x[i] = book[codes[i]] * absmax[i / block];
  });
}

}  // namespace memtrain::cpu
