#include "trainer/run_data.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "data/instruction_data.h"
#include "data/tokenizer.h"
#include "trainer/session.h"

namespace memtrain::trainer {

absl::StatusOr<Batch> Batch::make(int64_t B, int64_t T, bool packed) {
  Batch b;
  for (Tensor* t : {&b.inputs, &b.targets, &b.positions, &b.first}) {
    if (!packed && (t == &b.positions || t == &b.first)) continue;
    MEMTRAIN_ASSIGN_OR_RETURN(*t, Tensor::empty({B, T}, DType::kI32, MemCategory::kActivations));
  }
  return b;
}

void Batch::apply(model::ActivationStore& store) const {
  if (positions.defined()) store.set_packed({positions, first});
}

namespace {

data::RowsOut rows_of(Batch& b) {
  return {b.inputs.i32(), b.targets.i32(), b.positions.defined() ? b.positions.i32() : nullptr,
          b.first.defined() ? b.first.i32() : nullptr};
}

}  // namespace

absl::StatusOr<std::unique_ptr<RunData>> RunData::open(const Config& cfg, int64_t global_batch, bool prepare) {
  std::unique_ptr<RunData> d(new RunData());
  d->T_ = cfg.train.resolved_seq_len(cfg.model.block_size);
  d->global_batch_ = global_batch;
  d->eval_batch_ = cfg.train.batch_size;
  const uint64_t seed = static_cast<uint64_t>(cfg.train.seed);
  if (cfg.data.instructions.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(TokenData shards, open_token_data(cfg, prepare));
    d->train_shard_ = std::make_unique<data::TokenShard>(std::move(shards.train));
    d->val_shard_ = std::make_unique<data::TokenShard>(std::move(shards.val));
    d->train_.emplace(*d->train_shard_, global_batch, d->T_, seed, "train");
    d->val_.emplace(*d->val_shard_, d->eval_batch_, d->T_, seed, "val");
    MEMTRAIN_RETURN_IF_ERROR(d->train_->check());
    MEMTRAIN_RETURN_IF_ERROR(d->val_->check());
    return d;
  }
  // Instruction examples: every rank reads the file itself (it is small next to the model).
  const data::DataConfig& c = cfg.data;
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<data::Tokenizer> tok, data::load_tokenizer(c.tokenizer));
  const data::InstructionTemplate tmpl{c.prompt_template, c.response_template, c.turn_template, c.eos};
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<data::Example> examples, data::read_instructions(c.instructions, *tok, tmpl));
  for (const data::Example& e : examples) {
    for (int32_t id : e.tokens) {
      if (id >= cfg.model.vocab_size)
        return config_error("model.vocab_size", absl::StrCat(cfg.model.vocab_size, " is smaller than token id ", id,
                                                             " of data.tokenizer (in ", c.instructions, ")"));
    }
  }
  const int64_t n = static_cast<int64_t>(examples.size());
  if (n < 2)
    return config_error("data.instructions", absl::StrCat(c.instructions, " holds ", n, " examples; training and "
                                                          "validation need at least one each"));
  const int64_t held = std::min<int64_t>(n - 1, std::max<int64_t>(1, static_cast<int64_t>(c.val_fraction * n)));
  const std::vector<data::Example> train(examples.begin(), examples.end() - held), val(examples.end() - held,
                                                                                        examples.end());
  d->packed_ = c.packing;
  d->instructions_.emplace(data::layout_examples(train, d->T_, c.packing, 0), global_batch, seed, "train");
  d->val_instructions_.emplace(data::layout_examples(val, d->T_, c.packing, 0), d->eval_batch_, seed, "val");
  MEMTRAIN_RETURN_IF_ERROR(d->instructions_->check());
  MEMTRAIN_RETURN_IF_ERROR(d->val_instructions_->check());
  return d;
}

int64_t RunData::train_tokens() const {
  return train_ ? train_shard_->size() : instructions_->rows() * T_;
}

int64_t RunData::val_tokens() const { return val_ ? val_shard_->size() : val_instructions_->rows() * T_; }

void RunData::fill_train(int64_t step, int64_t row_begin, int64_t row_end, Batch& b) const {
  if (train_) return train_->fill(step, row_begin, row_end, b.inputs.i32(), b.targets.i32());
  instructions_->fill(step, row_begin, row_end, rows_of(b));
}

int64_t RunData::train_normalizer(int64_t step) const {
  if (train_) return global_batch_ * T_;
  return std::max<int64_t>(1, instructions_->trained_targets(step));
}

int64_t RunData::eval_batches() const { return val_ ? val_->eval_batches() : val_instructions_->eval_batches(); }

void RunData::fill_eval(int64_t index, Batch& b) const {
  if (val_) return val_->fill_eval(index, b.inputs.i32(), b.targets.i32());
  val_instructions_->fill_eval(index, 0, eval_batch_, rows_of(b));
}

int64_t RunData::eval_normalizer(int64_t index) const {
  if (val_) return eval_batch_ * T_;
  return std::max<int64_t>(1, val_instructions_->eval_trained_targets(index));
}

}  // namespace memtrain::trainer
