// A frozen projection weight stored in NF4 with double-quantized absmax (core/cpu/nf4.h), owning its bytes
// (accounted as parameters): what QLoRA keeps of the base model's projections instead of fp32 values.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/cpu/nf4.h"
#include "core/tensor.h"

namespace memtrain::model {

struct Nf4Weight {
  Tensor packed, codes, scales;  // u8 (rows * cols / 2), u8 (one per block of 64), f32 (one per 256 blocks)
  std::vector<int64_t> global_rows;  // a tensor-parallel part's rows in the whole matrix (empty: it is whole)
  cpu::Nf4Matrix matrix;         // views of the above

  // w: (rows, cols) row-major fp32; cols must be even.
  static absl::StatusOr<std::shared_ptr<const Nf4Weight>> quantize(const float* w, int64_t rows, int64_t cols);
  // A tensor-parallel part of the whole matrix w (rows, cols): the rows `part_rows` (global indices, in local
  // order), columns [c0, c1). The whole matrix is quantized (blocks, double quantization) and the part keeps its
  // blocks, so it dequantizes to exactly the whole matrix's values there, on any mesh. A part of fewer columns
  // than the whole needs cols, c0 and c1 - c0 to be multiples of 64 (whole blocks).
  static absl::StatusOr<std::shared_ptr<const Nf4Weight>> quantize_part(const float* w, int64_t rows, int64_t cols,
                                                                        std::vector<int64_t> part_rows, int64_t c0,
                                                                        int64_t c1);
  // What quantize() allocates for n elements: codes, absmax codes and scales.
  static int64_t bytes_for(int64_t n) {
    const int64_t blocks = (n + cpu::kNf4Block - 1) / cpu::kNf4Block;
    return n / 2 + blocks + 4 * ((blocks + cpu::kNf4AbsmaxBlock - 1) / cpu::kNf4AbsmaxBlock);
  }
  // What quantize_part() allocates for n of the whole matrix's `whole` elements (a part keeps every scale).
  static int64_t part_bytes(int64_t n, int64_t whole) {
    if (n == whole) return bytes_for(n);
    const int64_t blocks = (whole + cpu::kNf4Block - 1) / cpu::kNf4Block;
    return n / 2 + n / cpu::kNf4Block + 4 * ((blocks + cpu::kNf4AbsmaxBlock - 1) / cpu::kNf4AbsmaxBlock);
  }
  // The whole (rows, cols) matrix in fp32, as the matmuls see it (for merging and export, not for training).
  void dequantize(float* out) const;
  int64_t bytes() const { return static_cast<int64_t>(packed.nbytes() + codes.nbytes() + scales.nbytes()); }
};

}  // namespace memtrain::model
