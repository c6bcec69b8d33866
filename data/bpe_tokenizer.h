// Hugging Face BPE tokenizers of the two kinds decoder-only models use, read from a tokenizers `tokenizer.json`
// (or GPT-2's vocab.json + merges.txt); encodings equal the `tokenizers` package's
// (tests/reference/bpe_tokenizer_reference_test.cc).
// - Byte-level (GPT-2, LLaMA-3): text is split into pre-tokens by GPT-2's pattern ('s|'t|'re|'ve|'m|'ll|'d|
//   ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+, Unicode classes from ICU), each pre-token's UTF-8 bytes
//   become the 256 printable characters of GPT-2's bytes_to_unicode table.
// - SentencePiece-style (LLaMA-2, Mistral): spaces become U+2581 "▁", one is prepended (normalizer Prepend +
//   Replace, or pre-tokenizer Metaspace), symbols are Unicode characters, and a character outside the vocabulary
//   becomes its UTF-8 bytes as <0xXX> tokens (byte_fallback) or the unknown token.
// Then the merges are applied lowest rank first (leftmost of equal ranks), with a heap, so a long pre-token (a
// whole line, without a splitting pre-tokenizer) costs O(n log n). Added tokens (special ones such as
// <|endoftext|>) are matched in the raw text first, longest first. Other pipelines are errors naming the part.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "absl/status/statusor.h"
#include "data/tokenizer.h"

namespace memtrain::data {

class BpeTokenizer final : public Tokenizer {
 public:
  static absl::StatusOr<BpeTokenizer> from_tokenizer_json(const std::string& path);
  static absl::StatusOr<BpeTokenizer> from_vocab_merges(const std::string& vocab_json, const std::string& merges_txt);

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  // One more than the largest id (the vocabulary and the added tokens).
  int64_t vocab_size() const override { return static_cast<int64_t>(id_to_token_.size()); }
  std::optional<int32_t> token_id(const std::string& token) const;

  // The pre-tokens of GPT-2's pattern, as byte ranges of `text` (exposed for tests).
  static std::vector<std::string_view> pre_tokenize(std::string_view text);

 private:
  // Where a SentencePiece-style segment (text between added tokens) gets a leading ▁: never; when it begins the
  // text and has none (Metaspace "first"); when it has none (Metaspace "always"); always (the Prepend normalizer).
  enum class Prepend { kNever, kFirst, kIfMissing, kAlways };

  BpeTokenizer();
  absl::Status add_merge(const std::string& a, const std::string& b, int rank, const std::string& where);
  // The symbols a piece starts from: byte-level characters, or Unicode characters with byte fallback / unk.
  std::vector<std::string> initial_symbols(std::string_view piece) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  // A stretch of text between added tokens; `at_start`: it begins the text.
  void encode_segment(std::string_view text, bool at_start, std::vector<int32_t>& out) const;
  absl::Status read_metaspace(const nlohmann::json& j, const std::string& path);

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, int> merge_rank_;  // key: left + '\0' + right
  std::vector<std::pair<std::string, int32_t>> added_;  // raw text -> id, longest first
  bool add_prefix_space_ = false;
  bool ignore_merges_ = false;
  bool metaspace_ = false;        // SentencePiece-style instead of byte-level
  Prepend prepend_ = Prepend::kNever;
  bool split_ = false;            // Metaspace split = true: a pre-token starts at every ▁
  bool byte_fallback_ = false;
  std::optional<int32_t> unk_;    // the unknown token, if the model has one
  bool fuse_unk_ = false;
  std::array<std::string, 256> byte_char_;            // byte -> the UTF-8 of its printable character
  std::unordered_map<std::string, uint8_t> char_byte_;  // and back
};

}  // namespace memtrain::data
