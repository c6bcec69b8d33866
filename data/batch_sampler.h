// Training and evaluation batches from a token shard. Training windows are drawn by Philox from
// (seed, stream, step, row) alone, so data-parallel ranks fill disjoint row ranges of the one global batch.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/philox.h"
#include "data/token_shard.h"

namespace memtrain::data {

class BatchSampler {
 public:
  // `shard` must outlive the sampler. `stream` ("train", "val") names the Philox stream, so the two splits draw
  // unrelated offsets from one seed.
  BatchSampler(const TokenShard& shard, int64_t batch, int64_t seq_len, uint64_t seed, absl::string_view stream);

  // The shard must hold at least seq_len + 1 tokens (one window plus its shifted target); call before fill*.
  absl::Status check() const;

  int64_t batch() const { return batch_; }
  int64_t seq_len() const { return seq_len_; }

  // Rows [row_begin, row_end) of the global (batch, seq_len) batch for `step`. Row r is the window at offset
  // floor(u * (size - seq_len)) with u = philox_unit_double(philox_key(seed, stream), step * batch + r);
  // inputs = tokens[off, off + T), targets = tokens[off + 1, off + T + 1). inputs and targets each point at
  // (row_end - row_begin) * seq_len int32s.
  void fill(int64_t step, int64_t row_begin, int64_t row_end, int32_t* inputs, int32_t* targets) const;

  // Fixed evaluation windows: window w starts at w * seq_len, w taken modulo eval_windows() so batches wrap
  // around the shard. Row r of batch b is window b * batch + r. The row-range form is for data parallelism.
  void fill_eval(int64_t batch_index, int32_t* inputs, int32_t* targets) const;
  void fill_eval(int64_t batch_index, int64_t row_begin, int64_t row_end, int32_t* inputs, int32_t* targets) const;

  // Distinct evaluation windows ((size - 1) / seq_len), and the batches needed to cover each of them once.
  int64_t eval_windows() const;
  int64_t eval_batches() const { return (eval_windows() + batch_ - 1) / batch_; }

 private:
  void fill_row(int64_t offset, int32_t* inputs, int32_t* targets) const;

  const TokenShard& shard_;
  int64_t batch_, seq_len_;
  std::string stream_;
  PhiloxKey key_;
};

}  // namespace memtrain::data
