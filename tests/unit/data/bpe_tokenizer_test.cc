// The BPE tokenizer without Python: GPT-2's pre-tokenization on the cases its pattern decides subtly (the space
// before a word, runs of spaces and newlines, contractions only in lower case, digits and punctuation runs); merges
// by rank on a hand-made vocabulary; added tokens matched before everything; the SentencePiece-style scheme with
// byte fallback; and clear errors for the
// tokenizer.json pipelines it does not implement. (tests/reference compares whole corpora with `tokenizers`.)
#include "data/bpe_tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace memtrain::data {
namespace {

std::vector<std::string> pieces(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view p : BpeTokenizer::pre_tokenize(text)) out.emplace_back(p);
  return out;
}

TEST(BpePreTokenize, FollowsGpt2sPattern) {
  EXPECT_EQ(pieces("Hello world!  It's 2024.\n\nNew"),
            (std::vector<std::string>{"Hello", " world", "!", " ", " It", "'s", " 2024", ".", "\n", "\n", "New"}));
  EXPECT_EQ(pieces("we'll IT'S don't"), (std::vector<std::string>{"we", "'ll", " IT", "'", "S", " don", "'t"}));
  EXPECT_EQ(pieces("a  \n b...?!"), (std::vector<std::string>{"a", "  \n", " b", "...?!"}));  // backtracks one
  EXPECT_EQ(pieces("end   "), (std::vector<std::string>{"end", "   "}));
  EXPECT_EQ(pieces("été ٣٤ x²"), (std::vector<std::string>{"été", " ٣٤", " x", "²"}));
}

class BpeTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "memtrain_bpeu_" + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& json) {
    const std::string path = dir_ + "/tokenizer" + std::to_string(files_++) + ".json";
    std::ofstream(path) << json;
    return path;
  }
  std::string with(const std::string& normalizer, const std::string& pre, const std::string& merges) {
    return write(R"({"normalizer": )" + normalizer + R"(, "pre_tokenizer": )" + pre +
                 R"(, "added_tokens": [{"id": 9, "content": "<eos>", "special": true}],
                    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "abab": 3, "ba": 4},
                              "merges": )" + merges + "}}");
  }
  std::string dir_;
  int files_ = 0;
};

TEST_F(BpeTokenizerTest, MergesByRankAndMatchesAddedTokensFirst) {
  const std::string byte_level = R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})";
  auto t = BpeTokenizer::from_tokenizer_json(with("null", byte_level, R"(["a b", ["ab", "ab"], "b a"])"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->encode("abab"), (std::vector<int32_t>{3}));
  EXPECT_EQ(t->encode("bab"), (std::vector<int32_t>{1, 2}));  // "a b" (rank 0) before "b a" (rank 2)
  EXPECT_EQ(t->encode("ab<eos>ba"), (std::vector<int32_t>{2, 9, 4}));
  EXPECT_EQ(t->encode("abc"), (std::vector<int32_t>{2}));  // c is not in the vocabulary: dropped
  EXPECT_EQ(t->decode(std::vector<int32_t>{3, 9, 4}), "abab<eos>ba");
  EXPECT_EQ(t->vocab_size(), 10);
  EXPECT_EQ(t->token_id("<eos>"), 9);
}

// SentencePiece-style (LLaMA-2): spaces as ▁ with one prepended, merges across the whole segment, characters
// outside the vocabulary as their UTF-8 bytes (byte fallback) or the unknown token, and decoding back. The same
// with LLaMA-2's normalizer form and with a splitting Metaspace pre-tokenizer.
TEST_F(BpeTokenizerTest, SentencePieceStyleWithByteFallback) {
  const std::string model = R"("model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>", "fuse_unk": true,
      "vocab": {"<unk>": 0, "<0xC3>": 1, "<0xA9>": 2, "▁": 3, "a": 4, "b": 5, "▁a": 6, "ab": 7, "▁ab": 8},
      "merges": ["▁ a", "a b", "▁a b"]})";
  const std::string normalizer = R"({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]})";
  for (const std::string& pipeline :
       {R"("normalizer": )" + normalizer + R"(, "pre_tokenizer": null)",
        std::string(R"("normalizer": null, "pre_tokenizer": {"type": "Metaspace", "replacement": "▁",
                    "prepend_scheme": "first", "split": false})"),
        std::string(R"("normalizer": null, "pre_tokenizer": {"type": "Metaspace", "replacement": "▁",
                    "prepend_scheme": "always", "split": true})")}) {
    SCOPED_TRACE(pipeline);
    auto t = BpeTokenizer::from_tokenizer_json(write("{" + pipeline + ", " + model + "}"));
    ASSERT_TRUE(t.ok()) << t.status();
    // ▁ a b ▁ a b: "▁ a" (rank 0) at both places, leftmost first, then "▁a b" (rank 2); "a b" never gets a chance.
    EXPECT_EQ(t->encode("ab ab"), (std::vector<int32_t>{8, 8}));
    EXPECT_EQ(t->encode("é"), (std::vector<int32_t>{3, 1, 2}));  // é = C3 A9, not in the vocabulary
    EXPECT_EQ(t->encode("xyb"), (std::vector<int32_t>{3, 0, 5}));  // x and y: one fused <unk>
    EXPECT_EQ(t->decode(std::vector<int32_t>{8, 8}), "ab ab");
    EXPECT_EQ(t->decode(std::vector<int32_t>{3, 1, 2, 6}), "é a");
  }
}

TEST_F(BpeTokenizerTest, UnsupportedPipelinesAreErrorsNamingThePart) {
  const std::string byte_level = R"({"type": "ByteLevel"})";
  struct Case {
    std::string path, part;
  };
  for (const Case& c : {Case{with(R"({"type": "NFC"})", byte_level, "[]"), "normalizer"},
                        Case{with("null", R"({"type": "Whitespace"})", "[]"), "pre_tokenizer"},
                        Case{with(R"({"type": "NFC"})", "null", "[]"), "normalizer"},
                        Case{with("null", byte_level, R"(["a c"])"), "merge 'a c'"},
                        Case{with("null", byte_level, R"([3])"), "model.merges"},
                        Case{write("{not json"), "not a JSON object"}}) {
    auto t = BpeTokenizer::from_tokenizer_json(c.path);
    ASSERT_FALSE(t.ok()) << c.part;
    EXPECT_NE(t.status().message().find(c.part), std::string::npos) << t.status();
  }
}

}  // namespace
}  // namespace memtrain::data
