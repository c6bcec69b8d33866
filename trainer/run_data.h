// A run's training and validation batches, from either kind of data: token windows of prepared shards
// (pretraining; data.dataset or data.text) or instruction rows (fine-tuning; data.instructions: JSONL examples
// rendered by the [data] templates, the last data.val_fraction of them held out, padded or packed). The train
// loop and `memtrain eval` see one interface: fill rows of a step's global batch, and the number the loss sum is
// divided by (every position of a token window; the trained targets of instruction rows, as SFT trainers count).
#pragma once

#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "data/batch_sampler.h"
#include "data/instruction_batches.h"
#include "data/token_shard.h"
#include "model/activation_store.h"
#include "trainer/config.h"

namespace memtrain::trainer {

struct Batch {
  Tensor inputs, targets;   // (B, T) int32
  Tensor positions, first;  // (B, T) int32 for packed rows (model::PackedRows), else undefined
  static absl::StatusOr<Batch> make(int64_t B, int64_t T, bool packed);
  // Gives the store the batch's packed layout (nothing for plain rows).
  void apply(model::ActivationStore& store) const;
};

class RunData {
 public:
  // global_batch: rows per step over all data-parallel ranks and micro-batches. Text data is tokenized into
  // output.dir/data first unless `prepare` is false (ranks other than the one that prepares).
  static absl::StatusOr<std::unique_ptr<RunData>> open(const Config& cfg, int64_t global_batch, bool prepare = true);

  bool packed() const { return instructions_.has_value() && packed_; }
  int64_t train_tokens() const;  // for the banner: tokens (or trained targets) in each split
  int64_t val_tokens() const;
  absl::StatusOr<Batch> make_batch(int64_t B) const { return Batch::make(B, T_, packed()); }

  void fill_train(int64_t step, int64_t row_begin, int64_t row_end, Batch& b) const;
  int64_t train_normalizer(int64_t step) const;
  // Evaluation batches of cfg.train.batch_size rows: how many there are at most, one of them, its normaliser.
  int64_t eval_batches() const;
  int64_t eval_batch_size() const { return eval_batch_; }
  void fill_eval(int64_t index, Batch& b) const;
  int64_t eval_normalizer(int64_t index) const;

 private:
  RunData() = default;

  int64_t T_ = 0, global_batch_ = 0, eval_batch_ = 0;
  bool packed_ = false;
  // Token windows: the shards and their samplers (which point into the shards).
  std::unique_ptr<data::TokenShard> train_shard_, val_shard_;
  std::optional<data::BatchSampler> train_, val_;
  // Instruction rows.
  std::optional<data::InstructionBatches> instructions_, val_instructions_;
};

}  // namespace memtrain::trainer
