#include "data/bpe_tokenizer.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <functional>
#include <queue>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/file_io.h"
#include "core/status.h"

namespace memtrain::data {
namespace {

using nlohmann::json;

enum class CharClass { kLetter, kNumber, kSpace, kOther };

CharClass classify(UChar32 c) {
  if (c < 0) return CharClass::kOther;  // an invalid UTF-8 byte
  if (u_isUWhiteSpace(c)) return CharClass::kSpace;
  switch (u_charType(c)) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER: return CharClass::kLetter;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER: return CharClass::kNumber;
    default: return CharClass::kOther;
  }
}

struct CodePoint {
  UChar32 c;     // -1 for a byte that is not valid UTF-8
  size_t begin;  // byte offset in the text
};

// The code points of `text` (an invalid byte stands alone as -1), plus an end sentinel at text.size().
std::vector<CodePoint> code_points(std::string_view text) {
  std::vector<CodePoint> out;
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char b = s[i];
    const int len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
    UChar32 c = len == 1 ? b : len == 2 ? b & 0x1F : len == 3 ? b & 0x0F : b & 0x07;
    bool ok = len > 0 && i + len <= n;
    for (int k = 1; ok && k < len; ++k) {
      ok = (s[i + k] & 0xC0) == 0x80;
      c = (c << 6) | (s[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not valid UTF-8 either.
    if (ok && ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
               (c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF))
      ok = false;
    out.push_back({ok ? c : -1, i});
    i += ok ? len : 1;
  }
  out.push_back({0, n});
  return out;
}

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for U+0100 onwards in byte order.
std::array<UChar32, 256> byte_code_points() {
  std::array<UChar32, 256> map{};
  std::array<bool, 256> printable{};
  for (int b = '!'; b <= '~'; ++b) printable[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
  int next = 256;
  for (int b = 0; b < 256; ++b) map[b] = printable[b] ? b : next++;
  return map;
}

std::string utf8(UChar32 c) {
  std::string s;
  if (c < 0x80) {
    s += static_cast<char>(c);
  } else if (c < 0x800) {
    s += static_cast<char>(0xC0 | (c >> 6));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (c >> 12));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  }
  return s;
}

std::string merge_key(const std::string& a, const std::string& b) { return a + '\0' + b; }

}  // namespace

BpeTokenizer::BpeTokenizer() {
  const std::array<UChar32, 256> map = byte_code_points();
  for (int b = 0; b < 256; ++b) {
    byte_char_[b] = utf8(map[b]);
    char_byte_[byte_char_[b]] = static_cast<uint8_t>(b);
  }
}

std::vector<std::string_view> BpeTokenizer::pre_tokenize(std::string_view text) {
  const std::vector<CodePoint> cp = code_points(text);
  const size_t n = cp.size() - 1;
  auto cls = [&](size_t i) { return classify(cp[i].c); };
  auto piece = [&](size_t from, size_t to) { return text.substr(cp[from].begin, cp[to].begin - cp[from].begin); };
  std::vector<std::string_view> out;
  for (size_t i = 0; i < n;) {
    if (cp[i].c == '\'') {  // 's 't 're 've 'm 'll 'd, case-sensitive
      size_t matched = 0;
      for (const char* suffix : {"s", "t", "re", "ve", "m", "ll", "d"}) {
        const size_t len = std::char_traits<char>::length(suffix);
        bool ok = i + len < n + 1;
        for (size_t k = 0; ok && k < len; ++k) ok = i + 1 + k < n && cp[i + 1 + k].c == suffix[k];
        if (ok) {
          matched = len;
          break;
        }
      }
      if (matched > 0) {
        out.push_back(piece(i, i + 1 + matched));
        i += 1 + matched;
        continue;
      }
    }
    // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': an optional U+0020, then a run of one class.
    size_t j = i;
    if (cp[i].c == ' ' && i + 1 < n && cls(i + 1) != CharClass::kSpace) ++j;
    const CharClass c = cls(j);
    if (c != CharClass::kSpace) {
      size_t k = j;
      while (k < n && cls(k) == c) ++k;
      out.push_back(piece(i, k));
      i = k;
      continue;
    }
    // '\s+(?!\S)' leaves the last space of a run before a non-space to the next piece; '\s+' takes a lone one.
    size_t k = i;
    while (k < n && cls(k) == CharClass::kSpace) ++k;
    const size_t end = k == n || k - i == 1 ? k : k - 1;
    out.push_back(piece(i, end));
    i = end;
  }
  return out;
}

absl::Status BpeTokenizer::add_merge(const std::string& a, const std::string& b, int rank, const std::string& where) {
  if (!vocab_.count(a) || !vocab_.count(b) || !vocab_.count(a + b))
    return absl::InvalidArgumentError(absl::StrCat(where, ": merge '", a, " ", b, "' uses a token not in the vocabulary"));
  merge_rank_.emplace(merge_key(a, b), rank);  // the first (lowest) rank of a repeated merge stays
  return absl::OkStatus();
}

namespace {

absl::Status set_vocab(const json& v, const std::string& where, std::unordered_map<std::string, int32_t>& vocab,
                       std::vector<std::string>& id_to_token) {
  if (!v.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, ": the vocabulary is not an object"));
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() >= INT32_MAX)
      return absl::InvalidArgumentError(absl::StrCat(where, ": token '", it.key(), "' has no valid id"));
    const int32_t id = it.value().get<int32_t>();
    vocab[it.key()] = id;
    if (static_cast<size_t>(id) >= id_to_token.size()) id_to_token.resize(id + 1);
    id_to_token[id] = it.key();
  }
  return absl::OkStatus();
}

}  // namespace

namespace {
constexpr char kMeta[] = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space
}  // namespace

absl::Status BpeTokenizer::read_metaspace(const json& j, const std::string& path) {
  auto bad = [&](const std::string& key, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", key, ": ", why));
  };
  metaspace_ = true;
  const json& norm = j.value("normalizer", json());
  const json& pre = j.value("pre_tokenizer", json());
  if (!norm.is_null()) {
    // LLaMA-2 as transformers converted it: Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer.
    const json steps =
        norm.value("type", "") == "Sequence" ? norm.value("normalizers", json::array()) : json::array({norm});
    const bool ok = steps.size() == 2 && steps[0].value("type", "") == "Prepend" &&
                    steps[0].value("prepend", "") == kMeta && steps[1].value("type", "") == "Replace" &&
                    steps[1].value("pattern", json()).value("String", "") == " " &&
                    steps[1].value("content", "") == kMeta;
    if (!ok)
      return bad("normalizer", absl::StrCat(norm.dump(), " is not supported (only Prepend(▁) + Replace(' ', ▁))"));
    if (!pre.is_null()) return bad("pre_tokenizer", "must be null after a Prepend + Replace normalizer");
    prepend_ = Prepend::kAlways;
    return absl::OkStatus();
  }
  if (!pre.is_object() || pre.value("type", "") != "Metaspace")
    return bad("pre_tokenizer", absl::StrCat(pre.dump(), " is not supported (ByteLevel, or Metaspace)"));
  if (pre.value("replacement", kMeta) != kMeta) return bad("pre_tokenizer.replacement", "only ▁ is supported");
  const std::string scheme = pre.value("prepend_scheme", pre.value("add_prefix_space", true) ? "always" : "never");
  if (scheme == "first") {
    prepend_ = Prepend::kFirst;
  } else if (scheme == "always") {
    prepend_ = Prepend::kIfMissing;
  } else if (scheme == "never") {
    prepend_ = Prepend::kNever;
  } else {
    return bad("pre_tokenizer.prepend_scheme", absl::StrCat("'", scheme, "' is not first, always or never"));
  }
  split_ = pre.value("split", true);
  return absl::OkStatus();
}

absl::StatusOr<BpeTokenizer> BpeTokenizer::from_tokenizer_json(const std::string& path) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::string text, read_file(path));
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& key, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", key, ": ", why));
  };
  if (j.is_discarded() || !j.is_object()) return bad("(file)", "not a JSON object");
  BpeTokenizer t;
  const json& pre = j.value("pre_tokenizer", json());
  const bool byte_level = pre.is_object() && pre.value("type", "") == "ByteLevel";
  if (byte_level) {
    if (j.contains("normalizer") && !j["normalizer"].is_null())
      return bad("normalizer", "not supported with a ByteLevel pre-tokenizer");
    if (!pre.value("use_regex", true)) return bad("pre_tokenizer.use_regex", "false is not supported");
    t.add_prefix_space_ = pre.value("add_prefix_space", false);
  } else {
    MEMTRAIN_RETURN_IF_ERROR(t.read_metaspace(j, path));
  }
  if (!j.contains("model") || !j["model"].is_object()) return bad("model", "missing");
  const json& m = j["model"];
  if (m.value("type", "BPE") != "BPE") return bad("model.type", "only BPE is supported");
  t.byte_fallback_ = m.value("byte_fallback", false);
  if (t.byte_fallback_ && byte_level) return bad("model.byte_fallback", "true needs a SentencePiece-style tokenizer");
  for (const char* key : {"dropout", "continuing_subword_prefix", "end_of_word_suffix"}) {
    if (m.contains(key) && !m[key].is_null()) return bad(absl::StrCat("model.", key), "not supported");
  }
  t.ignore_merges_ = m.value("ignore_merges", false);
  t.fuse_unk_ = m.value("fuse_unk", false);
  MEMTRAIN_RETURN_IF_ERROR(set_vocab(m.value("vocab", json()), path + ": model.vocab", t.vocab_, t.id_to_token_));
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    const auto unk = t.vocab_.find(m["unk_token"].get<std::string>());
    if (unk == t.vocab_.end()) return bad("model.unk_token", "not in the vocabulary");
    t.unk_ = unk->second;
  }
  if (!m.contains("merges") || !m["merges"].is_array()) return bad("model.merges", "missing");
  int rank = 0;
  for (const json& e : m["merges"]) {
    std::string a, b;
    if (e.is_string()) {  // "a b"
      const std::string s = e.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos) return bad("model.merges", absl::StrCat("'", s, "' is not two tokens"));
      a = s.substr(0, sp), b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {  // ["a", "b"]
      a = e[0].get<std::string>(), b = e[1].get<std::string>();
    } else {
      return bad("model.merges", absl::StrCat(e.dump(), " is not a merge"));
    }
    MEMTRAIN_RETURN_IF_ERROR(t.add_merge(a, b, rank++, path));
  }
  for (const json& a : j.value("added_tokens", json::array())) {
    if (!a.is_object() || !a.contains("content") || !a["content"].is_string() || !a.contains("id") ||
        !a["id"].is_number_integer() || a["id"].get<int64_t>() < 0 || a["id"].get<int64_t>() >= INT32_MAX)
      return bad("added_tokens", absl::StrCat(a.dump(), " needs content and id"));
    for (const char* flag : {"single_word", "lstrip", "rstrip"}) {
      if (a.value(flag, false)) return bad(absl::StrCat("added_tokens.", flag), "true is not supported");
    }
    const std::string content = a["content"].get<std::string>();
    const int32_t id = a["id"].get<int32_t>();
    if (content.empty()) return bad("added_tokens", "an empty token");
    t.added_.push_back({content, id});
    if (static_cast<size_t>(id) >= t.id_to_token_.size()) t.id_to_token_.resize(id + 1);
    t.id_to_token_[id] = content;
  }
  std::stable_sort(t.added_.begin(), t.added_.end(),
                   [](const auto& x, const auto& y) { return x.first.size() > y.first.size(); });
  return t;
}

absl::StatusOr<BpeTokenizer> BpeTokenizer::from_vocab_merges(const std::string& vocab_json,
                                                              const std::string& merges_txt) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::string vocab_text, read_file(vocab_json));
  const json v = json::parse(vocab_text, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(vocab_json, ": not JSON"));
  BpeTokenizer t;
  MEMTRAIN_RETURN_IF_ERROR(set_vocab(v, vocab_json, t.vocab_, t.id_to_token_));
  MEMTRAIN_ASSIGN_OR_RETURN(std::string merges, read_file(merges_txt));
  std::istringstream in(merges);
  int rank = 0, line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
      return absl::InvalidArgumentError(absl::StrCat(merges_txt, ":", line_no, ": not two tokens"));
    MEMTRAIN_RETURN_IF_ERROR(t.add_merge(line.substr(0, sp), line.substr(sp + 1), rank++,
                                         absl::StrCat(merges_txt, ":", line_no)));
  }
  // GPT-2's files list its one special token in the vocabulary; its tokenizers treat it as an added token.
  const auto eot = t.vocab_.find("<|endoftext|>");
  if (eot != t.vocab_.end()) t.added_.push_back({eot->first, eot->second});
  return t;
}

std::optional<int32_t> BpeTokenizer::token_id(const std::string& token) const {
  for (const auto& [content, id] : added_) {
    if (content == token) return id;
  }
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> BpeTokenizer::initial_symbols(std::string_view piece) const {
  std::vector<std::string> symbols;
  if (!metaspace_) {
    for (unsigned char b : piece) symbols.push_back(byte_char_[b]);
    return symbols;
  }
  const std::vector<CodePoint> cp = code_points(piece);
  bool last_unk = false;
  for (size_t i = 0; i + 1 < cp.size(); ++i) {
    const std::string c(piece.substr(cp[i].begin, cp[i + 1].begin - cp[i].begin));
    if (vocab_.count(c)) {
      symbols.push_back(c);
      last_unk = false;
      continue;
    }
    if (byte_fallback_) {  // each UTF-8 byte as <0xXX>, when the vocabulary has them all
      std::vector<std::string> bytes;
      for (unsigned char b : c) bytes.push_back(absl::StrFormat("<0x%02X>", b));
      if (std::all_of(bytes.begin(), bytes.end(), [&](const std::string& x) { return vocab_.count(x) > 0; })) {
        symbols.insert(symbols.end(), bytes.begin(), bytes.end());
        last_unk = false;
        continue;
      }
    }
    if (unk_ && !(fuse_unk_ && last_unk)) symbols.push_back(id_to_token_[*unk_]);
    last_unk = unk_.has_value();
  }
  return symbols;
}

void BpeTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    std::string whole;
    if (metaspace_) {
      whole = std::string(piece);
    } else {
      for (unsigned char b : piece) whole += byte_char_[b];
    }
    const auto it = vocab_.find(whole);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::vector<std::string> sym = initial_symbols(piece);
  // Symbols in a linked list; candidate merges in a heap by (rank, left position). A popped candidate is stale
  // when either side has merged since (versions) or they are no longer neighbours.
  const int n = static_cast<int>(sym.size());
  std::vector<int> prev(n), next(n), version(n, 0);
  for (int i = 0; i < n; ++i) prev[i] = i - 1, next[i] = i + 1 < n ? i + 1 : -1;
  struct Candidate {
    int rank, left, right, left_version, right_version;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto consider = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const auto it = merge_rank_.find(merge_key(sym[l], sym[r]));
    if (it != merge_rank_.end()) heap.push({it->second, l, r, version[l], version[r]});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i, i + 1);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    if (version[c.left] != c.left_version || version[c.right] != c.right_version || next[c.left] != c.right) continue;
    sym[c.left] += sym[c.right];
    ++version[c.left];
    version[c.right] = -1;  // gone
    next[c.left] = next[c.right];
    if (next[c.left] >= 0) prev[next[c.left]] = c.left;
    consider(prev[c.left], c.left);
    consider(c.left, next[c.left]);
  }
  for (int i = n > 0 ? 0 : -1; i >= 0; i = next[i]) {
    const auto it = vocab_.find(sym[i]);
    if (it != vocab_.end()) out.push_back(it->second);  // as tokenizers does without an unk token: dropped
  }
}

void BpeTokenizer::encode_segment(std::string_view s, bool at_start, std::vector<int32_t>& out) const {
  if (s.empty()) return;
  if (!metaspace_) {
    std::string prefixed;
    if (add_prefix_space_ && s.front() != ' ') {
      prefixed.reserve(s.size() + 1);
      prefixed.push_back(' ');
      prefixed.append(s);
      s = prefixed;
    }
    for (std::string_view piece : pre_tokenize(s)) encode_piece(piece, out);
    return;
  }
  std::string text;
  for (char c : s) text += c == ' ' ? std::string(kMeta) : std::string(1, c);
  const bool starts_meta = text.rfind(kMeta, 0) == 0;
  if (prepend_ == Prepend::kAlways || (prepend_ == Prepend::kIfMissing && !starts_meta) ||
      (prepend_ == Prepend::kFirst && !starts_meta && at_start))
    text.insert(0, kMeta);
  if (!split_) return encode_piece(text, out);
  // Metaspace split: a piece starts at every ▁ (the ▁ goes with what follows it).
  const std::string_view all = text;
  size_t from = 0;
  for (size_t at = all.find(kMeta, 1); at != std::string_view::npos; at = all.find(kMeta, at + 1)) {
    if (at > from) encode_piece(all.substr(from, at - from), out);
    from = at;
  }
  encode_piece(all.substr(from), out);
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  auto encode_plain = [&](std::string_view s) { encode_segment(s, s.data() == text.data(), out); };
  size_t from = 0;
  for (size_t i = 0; i < text.size();) {
    bool matched = false;
    for (const auto& [content, id] : added_) {
      if (text.compare(i, content.size(), content) == 0) {
        encode_plain(text.substr(from, i - from));
        out.push_back(id);
        i += content.size();
        from = i;
        matched = true;
        break;
      }
    }
    if (!matched) ++i;
  }
  encode_plain(text.substr(from));
  return out;
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) continue;
    const std::string& token = id_to_token_[id];
    unsigned byte = 0;  // a byte-fallback token (even where a trainer listed the 256 among the added tokens)
    if (byte_fallback_ && token.size() == 6 && std::sscanf(token.c_str(), "<0x%2X>", &byte) == 1) {
      out += static_cast<char>(byte);
      continue;
    }
    if (std::any_of(added_.begin(), added_.end(), [&](const auto& a) { return a.second == id; })) {
      out += token;
      continue;
    }
    if (metaspace_) {  // ▁ is a space; the prepended ▁ of the text's first token goes
      for (size_t i = 0; i < token.size();) {
        const bool meta = token.compare(i, 3, kMeta) == 0;
        if (!(meta && out.empty() && prepend_ != Prepend::kNever)) out += meta ? std::string(" ") : token.substr(i, 1);
        i += meta ? 3 : 1;
      }
      continue;
    }
    // Each UTF-8 character of a byte-level token stands for one byte.
    for (size_t i = 0; i < token.size();) {
      const unsigned char b = token[i];
      const size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : 3;
      const auto it = char_byte_.find(token.substr(i, len));
      if (it != char_byte_.end()) out += static_cast<char>(it->second);
      i += len;
    }
  }
  return out;
}

}  // namespace memtrain::data
