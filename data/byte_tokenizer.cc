// ByteTokenizer: a byte is its own token id.
#include "data/byte_tokenizer.h"

namespace memtrain::data {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(std::span<const int32_t> ids) const {
  std::string text;
  text.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= 0 && ids[i] < kVocabSize) {
      text.push_back(static_cast<char>(ids[i]));
    } else {
      text.append("\xEF\xBF\xBD");  // U+FFFD REPLACEMENT CHARACTER in UTF-8
    }
  }
  return text;
}

}  // namespace memtrain::data
