#include "model/nf4_weight.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::model {

absl::StatusOr<std::shared_ptr<const Nf4Weight>> Nf4Weight::quantize(const float* w, int64_t rows, int64_t cols) {
  MEMTRAIN_CHECK_MSG(cols % 2 == 0, "NF4 packs two codes per byte: a row needs an even length");
  ThreadPool& pool = ThreadPool::global();
  const int64_t n = rows * cols, blocks = (n + cpu::kNf4Block - 1) / cpu::kNf4Block;
  auto q = std::make_shared<Nf4Weight>();
  MEMTRAIN_ASSIGN_OR_RETURN(q->packed, Tensor::empty({n / 2}, DType::kU8, MemCategory::kParameters));
  MEMTRAIN_ASSIGN_OR_RETURN(q->codes, Tensor::empty({blocks}, DType::kU8, MemCategory::kParameters));
  MEMTRAIN_ASSIGN_OR_RETURN(q->scales, Tensor::empty({(blocks + cpu::kNf4AbsmaxBlock - 1) / cpu::kNf4AbsmaxBlock},
                                                     DType::kF32, MemCategory::kParameters));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor absmax, Tensor::empty({blocks}, DType::kF32, MemCategory::kWorkspace));
  cpu::nf4_quantize(w, n, q->packed.data<uint8_t>(), absmax.f32(), pool);
  q->matrix = {rows, cols, q->packed.data<uint8_t>(), {0, blocks, q->codes.data<uint8_t>(), q->scales.f32()}};
  cpu::quantize_absmax(absmax.f32(), q->matrix.absmax, pool);
  return std::shared_ptr<const Nf4Weight>(std::move(q));
}

absl::StatusOr<std::shared_ptr<const Nf4Weight>> Nf4Weight::quantize_part(const float* w, int64_t rows, int64_t cols,
                                                                          std::vector<int64_t> part_rows, int64_t c0,
                                                                          int64_t c1) {
  const int64_t width = c1 - c0, local_rows = static_cast<int64_t>(part_rows.size());
  bool whole = c0 == 0 && c1 == cols && local_rows == rows;
  for (int64_t r = 0; whole && r < local_rows; ++r) whole = part_rows[r] == r;
  if (whole) return quantize(w, rows, cols);
  constexpr int64_t B = cpu::kNf4Block;
  if (cols % B != 0 || c0 % B != 0 || width % B != 0)
    return absl::InvalidArgumentError(absl::StrCat("NF4 with tensor parallelism needs row pieces of whole blocks of ",
                                                   B, ": a ", rows, " x ", cols, " weight split at columns [", c0,
                                                   ", ", c1, ")"));
  MEMTRAIN_ASSIGN_OR_RETURN(std::shared_ptr<const Nf4Weight> all, quantize(w, rows, cols));
  auto q = std::make_shared<Nf4Weight>();
  const int64_t n = local_rows * width, blocks = n / B;
  MEMTRAIN_ASSIGN_OR_RETURN(q->packed, Tensor::empty({n / 2}, DType::kU8, MemCategory::kParameters));
  MEMTRAIN_ASSIGN_OR_RETURN(q->codes, Tensor::empty({blocks}, DType::kU8, MemCategory::kParameters));
  MEMTRAIN_ASSIGN_OR_RETURN(q->scales, Tensor::empty_like(all->scales, MemCategory::kParameters));
  std::copy_n(all->scales.f32(), all->scales.numel(), q->scales.f32());
  for (int64_t r = 0; r < local_rows; ++r) {
    const int64_t from = part_rows[r] * cols + c0;
    std::copy_n(all->packed.data<uint8_t>() + from / 2, width / 2, q->packed.data<uint8_t>() + r * width / 2);
    std::copy_n(all->codes.data<uint8_t>() + from / B, width / B, q->codes.data<uint8_t>() + r * width / B);
  }
  q->global_rows = std::move(part_rows);
  cpu::QuantizedAbsmax a{all->matrix.absmax.offset, blocks, q->codes.data<uint8_t>(), q->scales.f32()};
  a.global_rows = q->global_rows.data();
  a.row_blocks = width / B;
  a.global_row_blocks = cols / B;
  a.first_col_block = c0 / B;
  q->matrix = {local_rows, width, q->packed.data<uint8_t>(), a};
  return std::shared_ptr<const Nf4Weight>(std::move(q));
}

void Nf4Weight::dequantize(float* out) const {
  std::vector<float> absmax(matrix.absmax.n);
  cpu::dequantize_absmax(matrix.absmax, 0, matrix.absmax.n, absmax.data());
  cpu::nf4_dequantize(matrix.packed, absmax.data(), 0, matrix.rows * matrix.cols, out);
}

}  // namespace memtrain::model
