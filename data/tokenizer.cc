#include "data/tokenizer.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "data/bpe_tokenizer.h"
#include "data/byte_tokenizer.h"

namespace memtrain::data {

absl::StatusOr<std::unique_ptr<Tokenizer>> load_tokenizer(const std::string& spec) {
  if (spec == "byte") return std::unique_ptr<Tokenizer>(std::make_unique<ByteTokenizer>());
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string json = spec;
  if (fs::is_directory(spec, ec)) {
    json = (fs::path(spec) / "tokenizer.json").string();
    if (!fs::exists(json, ec)) {
      const std::string vocab = (fs::path(spec) / "vocab.json").string(), merges = (fs::path(spec) / "merges.txt").string();
      if (!fs::exists(vocab, ec) || !fs::exists(merges, ec)) {
        return absl::NotFoundError(absl::StrCat(spec, ": holds neither tokenizer.json nor vocab.json + merges.txt"));
      }
      MEMTRAIN_ASSIGN_OR_RETURN(BpeTokenizer t, BpeTokenizer::from_vocab_merges(vocab, merges));
      return std::unique_ptr<Tokenizer>(std::make_unique<BpeTokenizer>(std::move(t)));
    }
  }
  MEMTRAIN_ASSIGN_OR_RETURN(BpeTokenizer t, BpeTokenizer::from_tokenizer_json(json));
  return std::unique_ptr<Tokenizer>(std::make_unique<BpeTokenizer>(std::move(t)));
}

}  // namespace memtrain::data
