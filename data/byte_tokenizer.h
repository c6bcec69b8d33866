// Byte-level tokenizer: token id = byte value, so any file round-trips exactly and the vocabulary is 256.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace memtrain::data {

class ByteTokenizer {
 public:
  static constexpr int64_t kVocabSize = 256;

  std::vector<int32_t> encode(absl::string_view text) const;
  // Ids outside [0, 256) (a model sampling past the byte range) decode as U+FFFD rather than aborting.
  std::string decode(const int32_t* ids, int64_t n) const;
};

}  // namespace memtrain::data
