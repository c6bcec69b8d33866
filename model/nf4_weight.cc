#include "model/nf4_weight.h"

#include <vector>

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

void Nf4Weight::dequantize(float* out) const {
  std::vector<float> absmax(matrix.absmax.n);
  cpu::dequantize_absmax(matrix.absmax, 0, matrix.absmax.n, absmax.data());
  cpu::nf4_dequantize(matrix.packed, absmax.data(), 0, matrix.rows * matrix.cols, out);
}

}  // namespace memtrain::model
