// `memtrain prepare`: tokenizes text files (the byte tokenizer or a Hugging Face one) into out_dir/train.bin and
// out_dir/val.bin.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/tokenizer.h"

namespace memtrain::data {

struct PrepareStats {
  int64_t files = 0, train_tokens = 0, val_tokens = 0;
};

// The files behind `inputs`: a file stands for itself; a directory for its regular files (not recursive; symlinks,
// hidden names and *.dat skipped), sorted by name. Errors: NotFound for a missing path, InvalidArgument when
// nothing is left.
absl::StatusOr<std::vector<std::string>> list_text_files(const std::vector<std::string>& inputs);

// Each file's first floor(bytes * (1 - val_fraction)) bytes go to train and the rest to val, so one file
// reproduces nanoGPT's split and many files each lend their tail to val (with a tokenizer of characters the cut
// moves to the next character boundary, and each side is tokenized on its own). val_fraction must be in (0, 1).
// Creates out_dir; the shards are written atomically. tokenizer: nullptr for the byte tokenizer.
absl::StatusOr<PrepareStats> prepare_text_dataset(const std::vector<std::string>& inputs, double val_fraction,
                                                  const std::string& out_dir, const Tokenizer* tokenizer = nullptr);

}  // namespace memtrain::data
