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
  std::string instructions;  // a JSONL file of fine-tuning examples
  bool packing = true;
  std::string prompt_template = "### Instruction:\n{prompt}\n\n### Response:\n";
  std::string response_template = "{response}";
  std::string turn_template = "<|im_start|>{role}\n{content}<|im_end|>\n";
  std::string eos = "<|endoftext|>";

  template <class V> void visit(V& v) {
    v("dataset", dataset, "directory holding train.bin and val.bin from `memtrain prepare`; \"\" to use data.text");
    v("text", text, "text files or directories (all regular files, *.dat skipped) tokenized when dataset is \"\"");
    v("val_fraction", val_fraction, "fraction of each text file (its end) held out for validation, in (0, 1)");
    v("tokenizer", tokenizer,
      "byte (vocabulary of 256), or a Hugging Face BPE tokenizer (byte-level as GPT-2's and LLaMA-3's, or "
      "SentencePiece-style with byte fallback as LLaMA-2's): a tokenizer.json, or a directory holding "
      "tokenizer.json or vocab.json + merges.txt (a model directory)");
    v("instructions", instructions,
      "a JSONL file of fine-tuning examples, {\"prompt\", \"response\"} or {\"messages\": [{\"role\", "
      "\"content\"}, ...]}, trained on the response (the assistant turns) only, instead of dataset / text; the "
      "last val_fraction of the examples are held out; \"\" = none");
    v("packing", packing,
      "instructions: several examples per row, kept apart by attention and restarting positions (else one "
      "example per row, padded)");
    v("prompt_template", prompt_template, "instructions: how a prompt is written; {prompt} stands for it (not trained)");
    v("response_template", response_template, "instructions: how a response is written; {response} stands for it");
    v("turn_template", turn_template,
      "instructions: how a chat turn is written, {role} and {content} standing for them; an assistant turn is "
      "trained from {content} on");
    v("eos", eos, "instructions: text ending every example (trained, so the model learns to stop); \"\" = none");
  }
  absl::Status validate() const;
};

}  // namespace memtrain::data
