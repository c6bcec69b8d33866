// BatchSampler: Philox-addressed training windows and fixed, wrapping evaluation windows.
#include "data/batch_sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::data {

BatchSampler::BatchSampler(const TokenShard& shard, int64_t batch, int64_t seq_len, uint64_t seed,
                           absl::string_view stream)
    : shard_(shard), batch_(batch), seq_len_(seq_len), stream_(stream), key_(philox_key(seed, stream)) {}

absl::Status BatchSampler::check() const {
  if (batch_ < 1 || seq_len_ < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(stream_, " sampler: batch (", batch_, ") and seq_len (", seq_len_, ") must be >= 1"));
  }
  if (shard_.size() < seq_len_ + 1) {
    return absl::InvalidArgumentError(absl::StrCat(shard_.path(), ": holds ", shard_.size(), " tokens, but the ",
                                                   stream_, " split needs at least seq_len + 1 = ", seq_len_ + 1,
                                                   " (one window and its shifted target)"));
  }
  return absl::OkStatus();
}

void BatchSampler::fill_row(int64_t offset, int32_t* inputs, int32_t* targets) const {
  shard_.copy(offset, seq_len_, inputs);
  shard_.copy(offset + 1, seq_len_, targets);
}

void BatchSampler::fill(int64_t step, int64_t row_begin, int64_t row_end, int32_t* inputs,
                        int32_t* targets) const {
  MEMTRAIN_CHECK(step >= 0 && 0 <= row_begin && row_begin <= row_end && row_end <= batch_);
  MEMTRAIN_CHECK_MSG(shard_.size() >= seq_len_ + 1, "call BatchSampler::check() first");
  // size - seq_len starting offsets keep off + seq_len + 1 <= size.
  const double starts = static_cast<double>(shard_.size() - seq_len_);
  for (int64_t r = row_begin; r < row_end; ++r) {
    const double u = philox_unit_double(key_, static_cast<uint64_t>(step * batch_ + r));
    // u < 1, but u * starts can round up to starts itself for large shards; clamp to the last valid start.
    const int64_t off = std::min(static_cast<int64_t>(std::floor(u * starts)), shard_.size() - seq_len_ - 1);
    const int64_t i = r - row_begin;
    fill_row(off, inputs + i * seq_len_, targets + i * seq_len_);
  }
}

int64_t BatchSampler::eval_windows() const { return (shard_.size() - 1) / seq_len_; }

void BatchSampler::fill_eval(int64_t batch_index, int32_t* inputs, int32_t* targets) const {
  fill_eval(batch_index, 0, batch_, inputs, targets);
}

void BatchSampler::fill_eval(int64_t batch_index, int64_t row_begin, int64_t row_end, int32_t* inputs,
                             int32_t* targets) const {
  MEMTRAIN_CHECK(batch_index >= 0 && 0 <= row_begin && row_begin <= row_end && row_end <= batch_);
  MEMTRAIN_CHECK_MSG(shard_.size() >= seq_len_ + 1, "call BatchSampler::check() first");
  const int64_t windows = eval_windows();
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t w = (batch_index * batch_ + r) % windows;
    const int64_t i = r - row_begin;
    fill_row(w * seq_len_, inputs + i * seq_len_, targets + i * seq_len_);
  }
}

}  // namespace memtrain::data
