// prepare_text_dataset: file listing, the per-file train/val split, and writing both shards.
#include "data/prepare.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "data/byte_tokenizer.h"
#include "core/fault_injection.h"
#include "core/file_io.h"
#include "data/token_shard.h"

namespace memtrain::data {
namespace fs = std::filesystem;

absl::StatusOr<std::vector<std::string>> list_text_files(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const std::string& input : inputs) {
    struct stat st;
    // stat, not lstat: a path the user names explicitly is followed even if it is a symlink.
    if (::stat(input.c_str(), &st) != 0) return errno_error(input, "cannot read text input", errno);
    if (S_ISREG(st.st_mode)) {
      files.push_back(input);
      continue;
    }
    if (!S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat(input, ": not a regular file or a directory"));
    }
    std::error_code ec;
    std::vector<std::string> names;
    for (fs::directory_iterator it(input, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.empty() || name[0] == '.' || absl::EndsWith(name, ".dat")) continue;
      // Symlinks are skipped so a directory cannot pull in files from elsewhere (or itself, twice).
      std::error_code type_ec;
      if (!it->is_regular_file(type_ec) || it->is_symlink(type_ec)) continue;
      names.push_back(name);
    }
    if (ec) return absl::InvalidArgumentError(absl::StrCat(input, ": cannot list directory: ", ec.message()));
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) files.push_back((fs::path(input) / name).string());
  }
  if (files.empty()) {
    return absl::InvalidArgumentError(
        inputs.empty() ? std::string("no text inputs given")
                       : absl::StrCat(inputs[0], (inputs.size() > 1 ? " (and the other inputs)" : ""),
                                      ": no text files found (directories contribute regular, non-hidden, "
                                      "non-.dat files)"));
  }
  return files;
}

absl::StatusOr<PrepareStats> prepare_text_dataset(const std::vector<std::string>& inputs, double val_fraction,
                                                  const std::string& out_dir, const Tokenizer* tokenizer) {
  if (!(val_fraction > 0 && val_fraction < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("val_fraction must be in (0, 1), got ", val_fraction));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(const std::vector<std::string> files, list_text_files(inputs));

  const ByteTokenizer bytes;
  const Tokenizer& tok = tokenizer != nullptr ? *tokenizer : bytes;
  std::vector<int32_t> train, val;
  for (const std::string& file : files) {
    MEMTRAIN_ASSIGN_OR_RETURN(const std::string text, read_file(file));
    // Same arithmetic as nanoGPT's int(n * 0.9): for val_fraction = 0.1, 1 - 0.1 is exactly the double 0.9.
    auto n_train = static_cast<size_t>(std::floor(static_cast<double>(text.size()) * (1.0 - val_fraction)));
    if (!tok.byte_level_ids()) {  // not inside a UTF-8 character
      while (n_train < text.size() && (static_cast<unsigned char>(text[n_train]) & 0xC0) == 0x80) ++n_train;
    }
    const std::string_view all(text);
    for (const auto& [part, out] : {std::pair{all.substr(0, n_train), &train}, std::pair{all.substr(n_train), &val}}) {
      const std::vector<int32_t> ids = tok.encode(part);
      out->insert(out->end(), ids.begin(), ids.end());
    }
  }
  if (train.empty() && val.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(files[0], (files.size() > 1 ? " and the other inputs" : ""),
                                                   ": no text (all ", files.size(), " files are empty)"));
  }
  if (train.empty() || val.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the ", train.empty() ? "train" : "val", " split of ", files.size(), " file(s) starting with ", files[0],
        " is empty: the text is too short for val_fraction ", val_fraction));
  }

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat(out_dir, ": cannot create directory: ", ec.message()));
  MEMTRAIN_RETURN_IF_ERROR(write_token_shard((fs::path(out_dir) / "train.bin").string(), train, tok.vocab_size()));
  MEMTRAIN_FAULT_POINT("prepare.between_shards");
  MEMTRAIN_RETURN_IF_ERROR(write_token_shard((fs::path(out_dir) / "val.bin").string(), val, tok.vocab_size()));
  PrepareStats stats;
  stats.files = static_cast<int64_t>(files.size());
  stats.train_tokens = static_cast<int64_t>(train.size());
  stats.val_tokens = static_cast<int64_t>(val.size());
  return stats;
}

}  // namespace memtrain::data
