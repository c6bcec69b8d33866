#include "data/instruction_batches.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::data {

InstructionBatches::InstructionBatches(InstructionRows rows, int64_t batch, uint64_t seed, absl::string_view stream)
    : rows_(std::move(rows)), batch_(batch), stream_(stream), key_(philox_key(seed, stream)) {
  for (int64_t r = 0; r < rows_.rows; ++r) {
    const int32_t* t = rows_.targets.data() + r * rows_.T;
    trained_.push_back(std::count_if(t, t + rows_.T, [](int32_t x) { return x >= 0; }));
  }
}

absl::Status InstructionBatches::check() const {
  if (batch_ < 1) return absl::InvalidArgumentError(absl::StrCat(stream_, " batches: batch must be >= 1"));
  if (rows_.rows < 1) return absl::InvalidArgumentError(absl::StrCat("the ", stream_, " split holds no examples"));
  int64_t trained = 0;
  for (int64_t n : trained_) trained += n;
  if (trained == 0)
    return absl::InvalidArgumentError(absl::StrCat("no ", stream_, " example keeps a trained token within the ",
                                                   rows_.T, " positions of a row (", rows_.truncated,
                                                   " were cut to fit): raise train.seq_len or shorten the templates"));
  return absl::OkStatus();
}

int64_t InstructionBatches::train_row(int64_t step, int64_t r) const {
  const double u = philox_unit_double(key_, static_cast<uint64_t>(step * batch_ + r));
  return std::min(static_cast<int64_t>(std::floor(u * static_cast<double>(rows_.rows))), rows_.rows - 1);
}

void InstructionBatches::copy_row(int64_t row, int64_t i, const RowsOut& out) const {
  const int64_t T = rows_.T, from = row * T, to = i * T;
  std::copy_n(rows_.inputs.data() + from, T, out.inputs + to);
  std::copy_n(rows_.targets.data() + from, T, out.targets + to);
  if (out.positions) std::copy_n(rows_.positions.data() + from, T, out.positions + to);
  if (out.first) std::copy_n(rows_.first.data() + from, T, out.first + to);
}

void InstructionBatches::fill(int64_t step, int64_t row_begin, int64_t row_end, const RowsOut& out) const {
  MEMTRAIN_CHECK(step >= 0 && 0 <= row_begin && row_begin <= row_end && row_end <= batch_ && rows_.rows > 0);
  for (int64_t r = row_begin; r < row_end; ++r) copy_row(train_row(step, r), r - row_begin, out);
}

int64_t InstructionBatches::trained_targets(int64_t step) const {
  int64_t n = 0;
  for (int64_t r = 0; r < batch_; ++r) n += trained_[train_row(step, r)];
  return n;
}

void InstructionBatches::fill_eval(int64_t batch_index, int64_t row_begin, int64_t row_end,
                                   const RowsOut& out) const {
  MEMTRAIN_CHECK(batch_index >= 0 && 0 <= row_begin && row_begin <= row_end && row_end <= batch_ && rows_.rows > 0);
  for (int64_t r = row_begin; r < row_end; ++r) copy_row((batch_index * batch_ + r) % rows_.rows, r - row_begin, out);
}

int64_t InstructionBatches::eval_trained_targets(int64_t batch_index) const {
  int64_t n = 0;
  for (int64_t r = 0; r < batch_; ++r) n += trained_[(batch_index * batch_ + r) % rows_.rows];
  return n;
}

}  // namespace memtrain::data
