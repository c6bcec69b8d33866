#include "core/cpu/nf4.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/cpu/dynamic_map.h"
#include "core/cpu/gemm.h"
#include "core/status.h"

namespace memtrain::cpu {

const std::array<float, 16>& nf4_values() {
  // QLoRA's table (Appendix E; bitsandbytes' NF4 code): 8 quantiles of the positive half, 7 of the negative, and 0.
  static const std::array<float, 16> values = {
      -1.0f,
      -0.6961928009986877f,
      -0.5250730514526367f,
      -0.39491748809814453f,
      -0.28444138169288635f,
      -0.18477343022823334f,
      -0.09105003625154495f,
      0.0f,
      0.07958029955625534f,
      0.16093020141124725f,
      0.24611230194568634f,
      0.33791524171829224f,
      0.44070982933044434f,
      0.5626170039176941f,
      0.7229568362236023f,
      1.0f,
  };
  return values;
}

uint8_t nf4_code(float x) {
  // Midpoints between neighbours, computed once in fp32; x above midpoint k belongs to code k + 1.
  static const std::array<float, 15> mid = [] {
    std::array<float, 15> m{};
    for (int k = 0; k < 15; ++k) m[k] = (nf4_values()[k] + nf4_values()[k + 1]) / 2;
    return m;
  }();
  return static_cast<uint8_t>(std::upper_bound(mid.begin(), mid.end(), x,
                                               [](float v, float m) { return v <= m; }) - mid.begin());
}

void nf4_quantize(const float* x, int64_t n, uint8_t* packed, float* absmax, ThreadPool& pool) {
  MEMTRAIN_CHECK_MSG(n % 2 == 0, "nf4_quantize: an even number of values (two per byte)");
  const uint8_t zero = nf4_code(0.0f);
  const int64_t blocks = (n + kNf4Block - 1) / kNf4Block;
  pool.parallel_for(blocks, 64, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i0 = b * kNf4Block, i1 = std::min(n, i0 + kNf4Block);
      float m = 0.0f;
      for (int64_t i = i0; i < i1; ++i) m = std::max(m, std::fabs(x[i]));
      absmax[b] = m;
      for (int64_t i = i0; i < i1; i += 2) {  // block starts are even, so a byte never spans two blocks
        const uint8_t hi = m > 0.0f ? nf4_code(x[i] / m) : zero;
        const uint8_t lo = m > 0.0f ? nf4_code(x[i + 1] / m) : zero;
        packed[i / 2] = static_cast<uint8_t>(hi << 4 | lo);
      }
    }
  });
}

namespace {

// Elements [begin, begin + n) (begin, n even) into out; absmax[k] is the absmax of block first_block + k.
void unpack(const uint8_t* packed, const float* absmax, int64_t first_block, int64_t begin, int64_t n, float* out) {
  const std::array<float, 16>& v = nf4_values();
  for (int64_t i = begin; i < begin + n; i += 2) {
    const uint8_t byte = packed[i / 2];
    const float m = absmax[i / kNf4Block - first_block];
    out[i - begin] = v[byte >> 4] * m;
    out[i - begin + 1] = v[byte & 15] * m;
  }
}

}  // namespace

void nf4_dequantize(const uint8_t* packed, const float* absmax, int64_t begin, int64_t n, float* out) {
  MEMTRAIN_CHECK_MSG(begin % 2 == 0 && n % 2 == 0, "nf4_dequantize: whole bytes");
  unpack(packed, absmax, 0, begin, n, out);
}

void quantize_absmax(const float* absmax, QuantizedAbsmax& q, ThreadPool& pool) {
  double sum = 0;
  for (int64_t i = 0; i < q.n; ++i) sum += absmax[i];
  q.offset = q.n > 0 ? static_cast<float>(sum / static_cast<double>(q.n)) : 0.0f;
  std::vector<float> centered(absmax, absmax + q.n);
  for (float& a : centered) a -= q.offset;
  quantize_blocks(dynamic_code_book(true), centered.data(), q.n, kNf4AbsmaxBlock, q.codes, q.scales, pool);
}

void dequantize_absmax(const QuantizedAbsmax& q, int64_t begin, int64_t n, float* absmax) {
  const CodeBook& book = dynamic_code_book(true);
  for (int64_t i = begin; i < begin + n; ++i)
    absmax[i - begin] = book[q.codes[i]] * q.scales[q.global_block(i) / kNf4AbsmaxBlock] + q.offset;
}

namespace {

constexpr int64_t kPanelFloats = 64 * 1024;  // 256 KiB of dequantized weight per task

// Elements [begin, begin + n) of w (begin, n even) into out, their absmax dequantized into the `absmax` scratch.
void dequantize_range(const Nf4Matrix& w, int64_t begin, int64_t n, std::vector<float>& absmax, float* out) {
  const int64_t b0 = begin / kNf4Block, b1 = (begin + n - 1) / kNf4Block + 1;
  absmax.resize(b1 - b0);
  dequantize_absmax(w.absmax, b0, b1 - b0, absmax.data());
  unpack(w.packed, absmax.data(), b0, begin, n, out);
}

}  // namespace

void nf4_matmul_xwt(const float* x, int64_t N, const Nf4Matrix& w, float beta, float* y, ThreadPool& pool) {
  MEMTRAIN_CHECK_MSG(w.cols % 2 == 0, "nf4_matmul_xwt: an even number of columns");
  const int64_t panel = std::clamp<int64_t>(kPanelFloats / w.cols, 1, w.rows);
  const int64_t panels = (w.rows + panel - 1) / panel;
  pool.parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> W(panel * w.cols), absmax;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t r0 = p * panel, r = std::min(panel, w.rows - r0);
      dequantize_range(w, r0 * w.cols, r * w.cols, absmax, W.data());
      sgemm_serial(false, true, N, r, w.cols, 1.0f, x, w.cols, W.data(), w.cols, beta, y + r0, w.rows);
    }
  });
}

void nf4_matmul_dyw(const float* dy, int64_t N, const Nf4Matrix& w, float beta, float* dx, ThreadPool& pool) {
  MEMTRAIN_CHECK_MSG(w.cols % 2 == 0, "nf4_matmul_dyw: an even number of columns");
  // Panels of an even number of columns, so every row's piece is whole bytes.
  const int64_t panel = std::min<int64_t>(w.cols, std::max<int64_t>(2, kPanelFloats / w.rows / 2 * 2));
  const int64_t panels = (w.cols + panel - 1) / panel;
  pool.parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> W(w.rows * panel), absmax;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t c0 = p * panel, c = std::min(panel, w.cols - c0);
      for (int64_t r = 0; r < w.rows; ++r) dequantize_range(w, r * w.cols + c0, c, absmax, W.data() + r * c);
      sgemm_serial(false, false, N, c, w.rows, 1.0f, dy, w.rows, W.data(), c, beta, dx + c0, w.cols);
    }
  });
}

}  // namespace memtrain::cpu
