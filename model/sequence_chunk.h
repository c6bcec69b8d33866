// StreamBP (memory.activations = "stream", model/block.h) runs a block's backward one chunk of positions at a
// time. A SequenceChunk is positions [s, e) of each of the B sequences of a (B*T)-row batch: its rows are
// (b*T + s .. b*T + e) for every b, gathered into a (B*c)-row tensor sequence by sequence.
#pragma once

#include <algorithm>
#include <cstdint>

#include "absl/status/statusor.h"
#include "core/status.h"
#include "core/tensor.h"

namespace memtrain::model {

struct SequenceChunk {
  int64_t B, T, s, e;

  int64_t c() const { return e - s; }
  int64_t rows() const { return B * c(); }
  bool whole() const { return s == 0 && e == T; }

  // Copies `width` values of every chunk row between a full (B*T rows, stride ld_full) and a chunk (B*c rows,
  // stride ld_part) matrix, either way.
  template <class V>
  void to_part(const V* full, int64_t ld_full, V* part, int64_t ld_part, int64_t width) const {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < c(); ++j)
        std::copy_n(full + (b * T + s + j) * ld_full, width, part + (b * c() + j) * ld_part);
  }
  template <class V>
  void to_full(const V* part, int64_t ld_part, V* full, int64_t ld_full, int64_t width) const {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < c(); ++j)
        std::copy_n(part + (b * c() + j) * ld_part, width, full + (b * T + s + j) * ld_full);
  }

  // The chunk's rows of `full` (B*T, w) as a new (B*c, w) tensor of `category`, or `full` itself when whole().
  absl::StatusOr<Tensor> gather(const Tensor& full, MemCategory category = MemCategory::kActivations) const {
    if (whole()) return full;
    const int64_t w = full.cols();
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor part, Tensor::empty({rows(), w}, full.dtype(), category));
    if (full.dtype() == DType::kI32) {
      to_part(full.i32(), w, part.i32(), w, w);
    } else {
      to_part(full.f32(), w, part.f32(), w, w);
    }
    return part;
  }
};

}  // namespace memtrain::model
