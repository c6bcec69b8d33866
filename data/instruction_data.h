// Instruction data for fine-tuning: JSONL records, either {"prompt": ..., "response": ...} or a chat
// {"messages": [{"role": "system" | "user" | "assistant", "content": ...}, ...]}, rendered by a template into token
// sequences whose loss covers only what the model should learn to write (the response; the assistant turns), then
// laid out in rows of a training batch: padded (one example per row) or packed (several per row, each with its own
// segment id and positions restarting at 0, so that attention can keep examples apart).
// Each templated piece is tokenized on its own and the pieces concatenated (as most SFT trainers tokenize prompt
// and response separately), so a token never straddles the prompt and the response.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/tokenizer.h"

namespace memtrain::data {

struct InstructionTemplate {
  // Prompt/response records: the prompt as `prompt` with {prompt} replaced (not trained), then `response` with
  // {response} replaced (trained).
  std::string prompt = "### Instruction:\n{prompt}\n\n### Response:\n";
  std::string response = "{response}";
  // Chat records: each turn as `turn` with {role} and {content} replaced; in assistant turns what comes from
  // {content} on is trained, the rest of the turn (and every other turn) is not.
  std::string turn = "<|im_start|>{role}\n{content}<|im_end|>\n";
  // Appended to every example, trained (so the model learns to stop); "" for none.
  std::string eos = "<|endoftext|>";
};

struct Example {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> trained;  // per token: 1 when the loss covers predicting it
};

// Reads every line of the JSONL file (blank lines skipped). Errors name the file and line.
absl::StatusOr<std::vector<Example>> read_instructions(const std::string& path, const Tokenizer& tokenizer,
                                                       const InstructionTemplate& tmpl);

// Rows of T positions: inputs, targets (-1 where the loss does not look: prompt tokens, padding, the last position
// of an example), segments (the example's index within its row, -1 for padding), positions (from 0 in each
// example) and first (the column of the example's first token: what attention may look back to; a padding
// position's own column). An example of n tokens fills n - 1 positions; one longer than T + 1 tokens is cut to its first T + 1.
struct InstructionRows {
  int64_t rows = 0, T = 0;
  std::vector<int32_t> inputs, targets, segments, positions, first;  // rows * T each
  int64_t truncated = 0;                                      // examples cut to fit a row
};
// packing: examples follow each other in a row while they fit (in file order; one that does not fit starts the
// next row); otherwise one example per row. pad_id fills the inputs of empty positions.
InstructionRows layout_examples(const std::vector<Example>& examples, int64_t T, bool packing, int32_t pad_id);

}  // namespace memtrain::data
