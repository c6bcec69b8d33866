// What turns text into token ids and back (data.tokenizer): the byte tokenizer, or a Hugging Face byte-level BPE
// tokenizer read from a file or a model directory.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace memtrain::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  // Whether every byte is a token of its own (text may then be cut anywhere, not only between characters).
  virtual bool byte_level_ids() const { return false; }
};

// "byte", or a Hugging Face tokenizer: a tokenizer.json file, or a directory holding tokenizer.json or GPT-2's
// vocab.json + merges.txt (a model directory). Errors name the path.
absl::StatusOr<std::unique_ptr<Tokenizer>> load_tokenizer(const std::string& spec);

}  // namespace memtrain::data
