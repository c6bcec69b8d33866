// ByteTokenizer: encode/decode round trips against the raw bytes, and the replacement for out-of-range ids.
#include "data/byte_tokenizer.h"

#include <gtest/gtest.h>

namespace memtrain {
namespace {

using data::ByteTokenizer;

TEST(ByteTokenizer, AllBytesRoundTrip) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const ByteTokenizer tok;
  const std::vector<int32_t> ids = tok.encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[b], b);  // id = unsigned byte value, never negative
  EXPECT_EQ(tok.decode(ids), all);
  EXPECT_EQ(ByteTokenizer::kVocabSize, 256);
}

TEST(ByteTokenizer, Utf8TextRoundTrip) {
  const std::string text = "To be, or not to be \xE2\x80\x94 \xC3\xA9t\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x99\x82\n";
  const ByteTokenizer tok;
  const std::vector<int32_t> ids = tok.encode(text);
  EXPECT_EQ(ids.size(), text.size());  // one token per byte, multi-byte characters included
  EXPECT_EQ(ids[0], 'T');
  EXPECT_EQ(ids[20], 0xE2);
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_TRUE(tok.encode("").empty());
}

TEST(ByteTokenizer, OutOfRangeIdsDecodeAsReplacementCharacter) {
  const ByteTokenizer tok;
  const int32_t ids[] = {'a', 256, -1, 'b', 70000};
  EXPECT_EQ(tok.decode(std::span<const int32_t>(ids, 5)), "a\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD");
}

}  // namespace
}  // namespace memtrain
