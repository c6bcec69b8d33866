// Hugging Face byte-level BPE tokenizers (GPT-2 and the models that reuse its scheme): text is split into
// pre-tokens by GPT-2's pattern ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+,
// Unicode classes from ICU), each pre-token's UTF-8 bytes become the 256 printable characters of GPT-2's
// bytes_to_unicode table, and the vocabulary's merges are applied lowest rank first. Added tokens (special ones such
// as <|endoftext|>) are matched in the raw text first, longest first. Read from a tokenizers `tokenizer.json`
// (model BPE, pre-tokenizer ByteLevel) or from GPT-2's vocab.json + merges.txt; encodings equal the `tokenizers`
// package's (tests/reference/bpe_tokenizer_reference_test.cc). Other pipelines (SentencePiece-style byte fallback,
// regex Split pre-tokenizers) are errors naming the unsupported part.
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
  BpeTokenizer();
  absl::Status add_merge(const std::string& a, const std::string& b, int rank, const std::string& where);
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, int> merge_rank_;  // key: left + '\0' + right
  std::vector<std::pair<std::string, int32_t>> added_;  // raw text -> id, longest first
  bool add_prefix_space_ = false;
  bool ignore_merges_ = false;
  std::array<std::string, 256> byte_char_;            // byte -> the UTF-8 of its printable character
  std::unordered_map<std::string, uint8_t> char_byte_;  // and back
};

}  // namespace memtrain::data
