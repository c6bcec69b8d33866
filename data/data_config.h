// The [data] section: where tokens come from. It knows nothing of TOML; trainer/config walks `visit`.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace memtrain::data {

struct DataConfig {
  std::string dataset;            // a directory with train.bin and val.bin written by `memtrain prepare`
  std::vector<std::string> text;  // text files or directories, tokenized into output.dir/data when dataset is ""
  double val_fraction = 0.1;
  std::string tokenizer = "byte";

  template <class V> void visit(V& v) {
    v("dataset", dataset, "directory holding train.bin and val.bin from `memtrain prepare`; \"\" to use data.text");
    v("text", text, "text files or directories (all regular files, *.dat skipped) tokenized when dataset is \"\"");
    v("val_fraction", val_fraction, "fraction of each text file (its end) held out for validation, in (0, 1)");
    v("tokenizer", tokenizer,
      "byte (vocabulary of 256), or a Hugging Face byte-level BPE tokenizer: a tokenizer.json, or a directory "
      "holding tokenizer.json or vocab.json + merges.txt (a model directory)");
  }
  absl::Status validate() const;
};

}  // namespace memtrain::data
