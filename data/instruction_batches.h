// Training and evaluation batches of instruction rows (data/instruction_data's layout). Row r of step s's global
// batch is row floor(u * rows) with u = philox_unit_double(philox_key(seed, stream), s * batch + r): rows are
// drawn with replacement, addressed by (step, row) so that any data-parallel rank fills its own rows and a resumed
// run sees what an uninterrupted one would (as BatchSampler draws token windows). Evaluation takes the rows in
// order, wrapping around.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/philox.h"
#include "data/instruction_data.h"

namespace memtrain::data {

// Where fill() writes (row_end - row_begin) rows of seq_len int32s each; positions and first may be null (padded
// rows need no layout: positions from 0, examples alone in their rows).
struct RowsOut {
  int32_t* inputs;
  int32_t* targets;
  int32_t* positions = nullptr;
  int32_t* first = nullptr;
};

class InstructionBatches {
 public:
  InstructionBatches(InstructionRows rows, int64_t batch, uint64_t seed, absl::string_view stream);

  // At least one row, and at least one target the loss covers (examples cut to the sequence length may lose
  // every trained token).
  absl::Status check() const;
  int64_t batch() const { return batch_; }
  int64_t seq_len() const { return rows_.T; }
  int64_t rows() const { return rows_.rows; }

  void fill(int64_t step, int64_t row_begin, int64_t row_end, const RowsOut& out) const;
  // Targets the loss covers in the whole global batch of `step` (its normaliser).
  int64_t trained_targets(int64_t step) const;

  void fill_eval(int64_t batch_index, int64_t row_begin, int64_t row_end, const RowsOut& out) const;
  int64_t eval_trained_targets(int64_t batch_index) const;
  int64_t eval_batches() const { return (rows_.rows + batch_ - 1) / batch_; }

 private:
  int64_t train_row(int64_t step, int64_t r) const;
  void copy_row(int64_t row, int64_t i, const RowsOut& out) const;

  InstructionRows rows_;
  std::vector<int64_t> trained_;  // per row
  int64_t batch_;
  std::string stream_;
  PhiloxKey key_;
};

}  // namespace memtrain::data
