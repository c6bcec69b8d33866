#include "data/instruction_data.h"

#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/file_io.h"
#include "core/status.h"

namespace memtrain::data {
namespace {

using nlohmann::json;

void append(Example& e, const Tokenizer& tok, const std::string& text, bool trained) {
  if (text.empty()) return;
  const std::vector<int32_t> ids = tok.encode(text);
  e.tokens.insert(e.tokens.end(), ids.begin(), ids.end());
  e.trained.insert(e.trained.end(), ids.size(), trained ? 1 : 0);
}

absl::StatusOr<Example> render(const json& record, const Tokenizer& tok, const InstructionTemplate& t,
                               const std::string& where) {
  auto bad = [&](const std::string& why) { return absl::InvalidArgumentError(absl::StrCat(where, ": ", why)); };
  if (!record.is_object()) return bad("not a JSON object");
  Example e;
  if (record.contains("messages")) {
    const json& messages = record["messages"];
    if (!messages.is_array() || messages.empty()) return bad("messages must be a non-empty array");
    const size_t at = t.turn.find("{content}");
    if (at == std::string::npos) return bad("the turn template has no {content}");
    bool any_assistant = false;
    for (const json& m : messages) {
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
          !m["content"].is_string())
        return bad("every message needs string role and content");
      const std::string role = m["role"].get<std::string>();
      if (role != "system" && role != "user" && role != "assistant") return bad(absl::StrCat("unknown role '", role, "'"));
      const bool assistant = role == "assistant";
      any_assistant = any_assistant || assistant;
      const auto fill = [&](const std::string& s) {
        return absl::StrReplaceAll(s, {{"{role}", role}, {"{content}", m["content"].get<std::string>()}});
      };
      append(e, tok, fill(t.turn.substr(0, at)), false);
      append(e, tok, fill(t.turn.substr(at)), assistant);
    }
    if (!any_assistant) return bad("no assistant message: nothing to learn");
  } else {
    if (!record.contains("prompt") || !record["prompt"].is_string() || !record.contains("response") ||
        !record["response"].is_string())
      return bad("needs string \"prompt\" and \"response\" (or \"messages\")");
    append(e, tok, absl::StrReplaceAll(t.prompt, {{"{prompt}", record["prompt"].get<std::string>()}}), false);
    append(e, tok, absl::StrReplaceAll(t.response, {{"{response}", record["response"].get<std::string>()}}), true);
  }
  append(e, tok, t.eos, true);
  if (e.tokens.size() < 2) return bad("fewer than two tokens");
  return e;
}

}  // namespace

absl::StatusOr<std::vector<Example>> read_instructions(const std::string& path, const Tokenizer& tokenizer,
                                                       const InstructionTemplate& tmpl) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::string text, read_file(path));
  std::vector<Example> out;
  std::istringstream in(text);
  int64_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = absl::StrCat(path, ":", line_no);
    const json record = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(where, ": not JSON"));
    MEMTRAIN_ASSIGN_OR_RETURN(Example e, render(record, tokenizer, tmpl, where));
    out.push_back(std::move(e));
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no examples"));
  return out;
}

InstructionRows layout_examples(const std::vector<Example>& examples, int64_t T, bool packing, int32_t pad_id) {
  InstructionRows r;
  r.T = T;
  int64_t used = T;  // positions filled in the current row (T: start a new one)
  int32_t segment = 0;
  auto new_row = [&] {
    r.inputs.insert(r.inputs.end(), T, pad_id);
    r.targets.insert(r.targets.end(), T, -1);
    r.segments.insert(r.segments.end(), T, -1);
    r.positions.insert(r.positions.end(), T, 0);
    for (int64_t t = 0; t < T; ++t) r.first.push_back(static_cast<int32_t>(t));  // padding sees only itself
    ++r.rows;
    used = 0;
    segment = 0;
  };
  for (const Example& e : examples) {
    int64_t n = static_cast<int64_t>(e.tokens.size()) - 1;  // (input, target) pairs
    if (n > T) {
      n = T;
      ++r.truncated;
    }
    if (!packing || used + n > T) new_row();
    const int64_t base = (r.rows - 1) * T + used;
    for (int64_t i = 0; i < n; ++i) {
      r.inputs[base + i] = e.tokens[i];
      r.targets[base + i] = e.trained[i + 1] ? e.tokens[i + 1] : -1;
      r.segments[base + i] = segment;
      r.positions[base + i] = static_cast<int32_t>(i);
      r.first[base + i] = static_cast<int32_t>(used);
    }
    used += n;
    ++segment;
  }
  return r;
}

}  // namespace memtrain::data
