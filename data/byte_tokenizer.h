// Byte-level tokenizer: token id = byte value, so any file round-trips exactly and the vocabulary is 256.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace memtrain::data {

class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr int64_t kVocabSize = 256;

  std::vector<int32_t> encode(std::string_view text) const override;
  // Ids outside [0, 256) (a model sampling past the byte range) decode as U+FFFD rather than aborting.
  std::string decode(std::span<const int32_t> ids) const override;
  int64_t vocab_size() const override { return kVocabSize; }
  bool byte_level_ids() const override { return true; }
};

}  // namespace memtrain::data
