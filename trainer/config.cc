// Loading a Config: TOML text -> sections through the flat key list of bind_config_fields, then --set overrides,
// then validation. Every error names the file (syntax, I/O, encoding) or the key (everything else).
#include "trainer/config.h"

#include "trainer/hf_convert.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <string_view>
#include <utility>

#include <toml++/toml.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/status.h"

namespace memtrain::trainer {
namespace {

// ---- The flat key list ----

struct Binder {
  std::vector<FieldRef>* out;
  std::string section;
  void add(const char* key, FieldType type, const char* doc, void* value) {
    out->push_back(FieldRef{section, key, type, doc, value});
  }
  void operator()(const char* key, int64_t& v, const char* doc) { add(key, FieldType::kInt, doc, &v); }
  void operator()(const char* key, double& v, const char* doc) { add(key, FieldType::kFloat, doc, &v); }
  void operator()(const char* key, bool& v, const char* doc) { add(key, FieldType::kBool, doc, &v); }
  void operator()(const char* key, std::string& v, const char* doc) { add(key, FieldType::kString, doc, &v); }
  void operator()(const char* key, std::vector<std::string>& v, const char* doc) {
    add(key, FieldType::kStringList, doc, &v);
  }
  void operator()(const char* key, std::vector<int64_t>& v, const char* doc) { add(key, FieldType::kIntList, doc, &v); }
  template <class Section> void operator()(const char* name, Section& s) {
    section = name;
    s.visit(*this);
  }
};

std::vector<std::string> section_names() {
  Config c;
  std::vector<std::string> names;
  for (const FieldRef& f : bind_config_fields(c))
    if (names.empty() || names.back() != f.section) names.push_back(f.section);
  return names;
}

// ---- Suggestions for unknown keys ----

// Optimal-string-alignment distance: Levenshtein plus adjacent transpositions ("max_stpes" is 1 from "max_steps").
int edit_distance(absl::string_view a, absl::string_view b) {
  std::vector<std::vector<int>> d(a.size() + 1, std::vector<int>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// The valid key nearest to section.key, or "" when none is close. A key that exists in another section costs 2,
// so "[train] lr" suggests optim.lr.
std::string nearest_key(const std::vector<FieldRef>& fields, absl::string_view section, absl::string_view key) {
  const std::string full = section.empty() ? std::string(key) : absl::StrCat(section, ".", key);
  const int limit = std::max<int>(2, static_cast<int>(key.size()) / 3);
  std::string best;
  int best_d = limit + 1;
  for (const FieldRef& f : fields) {
    const int d =
        std::min(edit_distance(full, f.full_key()), edit_distance(key, f.key) + (section == f.section ? 0 : 2));
    if (d < best_d) best_d = d, best = f.full_key();
  }
  return best;
}

std::string nearest_section(absl::string_view name) {
  const int limit = std::max<int>(2, static_cast<int>(name.size()) / 3);
  std::string best;
  int best_d = limit + 1;
  for (const std::string& s : section_names()) {
    const int d = edit_distance(name, s);
    if (d < best_d) best_d = d, best = s;
  }
  return best;
}

absl::Status unknown_key(const std::vector<FieldRef>& fields, absl::string_view section, absl::string_view key,
                         absl::string_view where) {
  const bool known_section = [&] {
    for (const FieldRef& f : fields)
      if (f.section == section) return true;
    return false;
  }();
  std::string why = section.empty()  ? "not inside a section"
                    : known_section   ? "unknown key"
                                      : absl::StrCat("unknown key (no section [", section, "])");
  const std::string hint = nearest_key(fields, section, key);
  if (!hint.empty()) {
    absl::StrAppend(&why, "; did you mean ", hint, "?");
  } else if (known_section) {
    std::vector<std::string> keys;
    for (const FieldRef& f : fields)
      if (f.section == section) keys.push_back(f.key);
    absl::StrAppend(&why, "; [", section, "] has ", absl::StrJoin(keys, ", "));
  } else {
    absl::StrAppend(&why, "; sections are ", absl::StrJoin(section_names(), ", "));
  }
  if (!where.empty()) absl::StrAppend(&why, " (", where, ")");
  return config_error(section.empty() ? std::string(key) : absl::StrCat(section, ".", key), why);
}

// ---- TOML values -> fields ----

std::string describe(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: {
      std::string s(n.as_string()->get());
      if (s.size() > 40) s = s.substr(0, 40) + "...";
      return absl::StrCat("string \"", s, "\"");
    }
    case toml::node_type::integer: return absl::StrCat("integer ", n.as_integer()->get());
    case toml::node_type::floating_point: {
      char buf[64];  // shortest exact form, so 3.0 shows as "3.0" and not as the integer 3
      const auto r = std::to_chars(buf, buf + sizeof buf, n.as_floating_point()->get());
      std::string s(buf, r.ptr);
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
      return absl::StrCat("float ", s);
    }
    case toml::node_type::boolean: return n.as_boolean()->get() ? "boolean true" : "boolean false";
    case toml::node_type::array: return "array";
    case toml::node_type::table: return "table";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    default: return "nothing";
  }
}

std::string expected_name(FieldType type) {
  switch (type) {
    case FieldType::kInt: return "an integer";
    case FieldType::kFloat: return "a number";
    case FieldType::kBool: return "a boolean (true or false)";
    case FieldType::kString: return "a string";
    case FieldType::kStringList: return "an array of strings";
    case FieldType::kIntList: return "an array of integers";
  }
  return "?";
}

std::string position(absl::string_view source_name, const toml::node& n) {
  const toml::source_position p = n.source().begin;
  if (p.line == 0) return std::string(source_name);
  return absl::StrCat(source_name, ":", p.line, ":", p.column);
}

// A TOML array whose items are all T (std::string or int64_t) into the field's std::vector<T>; `what` names the
// items in the message about the first one that is not.
template <class T, class Fail, class WrongType>
absl::Status assign_array(const toml::node& n, const FieldRef& f, absl::string_view what, const Fail& fail,
                          const WrongType& wrong_type) {
  const toml::array* a = n.as_array();
  if (a == nullptr) return wrong_type();
  std::vector<T> out;
  for (size_t i = 0; i < a->size(); ++i) {
    const auto* item = a->get(i)->template as<T>();
    if (item == nullptr)
      return fail(absl::StrCat("expected an array of ", what, ", got ", describe(*a->get(i)), " at index ", i));
    out.push_back(item->get());
  }
  *static_cast<std::vector<T>*>(f.value) = std::move(out);
  return absl::OkStatus();
}

// Stores `n` into `f` if its TOML type fits the field's. `where` ("configs/x.toml:3:7" or "--set") ends messages.
absl::Status assign(const toml::node& n, const FieldRef& f, absl::string_view where) {
  auto fail = [&](absl::string_view why) {
    return config_error(f.full_key(), where.empty() ? std::string(why) : absl::StrCat(why, " (", where, ")"));
  };
  auto wrong_type = [&]() { return fail(absl::StrCat("expected ", expected_name(f.type), ", got ", describe(n))); };
  switch (f.type) {
    case FieldType::kInt:
      // TOML integers only: 3.0 is rejected too, so a count is never silently truncated.
      if (const auto* v = n.as_integer()) {
        *static_cast<int64_t*>(f.value) = v->get();
        return absl::OkStatus();
      }
      return wrong_type();
    case FieldType::kFloat: {
      double d;
      if (const auto* v = n.as_floating_point()) d = v->get();
      else if (const auto* i = n.as_integer()) d = static_cast<double>(i->get());
      else return wrong_type();
      if (!std::isfinite(d)) return fail(absl::StrCat("expected a finite number, got ", d));
      *static_cast<double*>(f.value) = d;
      return absl::OkStatus();
    }
    case FieldType::kBool:
      if (const auto* v = n.as_boolean()) {
        *static_cast<bool*>(f.value) = v->get();
        return absl::OkStatus();
      }
      return wrong_type();
    case FieldType::kString:
      if (const auto* v = n.as_string()) {
        *static_cast<std::string*>(f.value) = v->get();
        return absl::OkStatus();
      }
      return wrong_type();
    case FieldType::kStringList: return assign_array<std::string>(n, f, "strings", fail, wrong_type);
    case FieldType::kIntList: return assign_array<int64_t>(n, f, "integers", fail, wrong_type);
  }
  return fail("unhandled field type");
}

// ---- Parsing ----

// Rejects NUL bytes and invalid UTF-8 up front, so a binary file gets one clear message.
absl::Status check_text(absl::string_view text, absl::string_view source_name) {
  int line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len != 0 && c != 0 && i + len <= text.size();
    for (size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(text[i + k]) >> 6) == 0x2;
    if (!ok)
      return absl::InvalidArgumentError(absl::StrCat(source_name, ":", line, ":", i - line_start + 1,
                                                     ": not a UTF-8 text file (byte 0x", absl::Hex(c, absl::kZeroPad2),
                                                     " at offset ", i, ")"));
    if (c == '\n') ++line, line_start = i + 1;
    i += len;
  }
  return absl::OkStatus();
}

// toml::parse with its errors as "source:line:col: description". No exception leaves this function.
absl::StatusOr<toml::table> parse_toml(absl::string_view text, absl::string_view source_name) {
  const std::string_view doc(text.data(), text.size());
  auto error = [&](const toml::source_region& where, std::string_view description) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ":", where.begin.line, ":", where.begin.column, ": ",
                                                   absl::string_view(description.data(), description.size())));
  };
#if TOML_EXCEPTIONS
  try {
    return toml::parse(doc, std::string_view(source_name.data(), source_name.size()));
  } catch (const toml::parse_error& e) {
    return error(e.source(), e.description());
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": ", e.what()));
  }
#else
  toml::parse_result r = toml::parse(doc, std::string_view(source_name.data(), source_name.size()));
  if (!r) return error(r.error().source(), r.error().description());
  return std::move(r).table();
#endif
}

struct Entry {
  std::string key;
  const toml::node* value;
  std::string key_at;  // "file:line:col" of the key itself, for unknown-key messages
};

// The entries of a table in the order they appear in the file (toml::table itself is sorted by key).
std::vector<Entry> in_file_order(const toml::table& t, absl::string_view source) {
  std::vector<std::pair<toml::source_position, Entry>> sorted;
  for (const auto& [k, v] : t) {
    const toml::source_position p = k.source().begin.line ? k.source().begin : v.source().begin;
    sorted.push_back({p, Entry{std::string(k.str()), &v,
                               p.line ? absl::StrCat(source, ":", p.line, ":", p.column) : std::string(source)}});
  }
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.first.line != b.first.line ? a.first.line < b.first.line : a.first.column < b.first.column;
  });
  std::vector<Entry> out;
  for (auto& [p, e] : sorted) out.push_back(std::move(e));
  return out;
}

absl::Status apply_table(const toml::table& root, const std::vector<FieldRef>& fields, absl::string_view source) {
  const std::vector<std::string> sections = section_names();
  for (const auto& [name, node, name_at] : in_file_order(root, source)) {
    const bool known = std::find(sections.begin(), sections.end(), name) != sections.end();
    const toml::table* table = node->as_table();
    if (!known && table == nullptr) return unknown_key(fields, "", name, name_at);
    if (!known && table->empty()) {
      const std::string hint = nearest_section(name);
      const std::string advice = hint.empty() ? absl::StrCat("; sections are ", absl::StrJoin(sections, ", "))
                                              : absl::StrCat("; did you mean [", hint, "]?");
      return config_error(name, absl::StrCat("unknown section", advice, " (", name_at, ")"));
    }
    if (table == nullptr)
      return config_error(name, absl::StrCat("expected a table (section [", name, "]), got ", describe(*node), " (",
                                             position(source, *node), ")"));
    for (const auto& [key, value, key_at] : in_file_order(*table, source)) {
      // Structured bindings captured by init-capture: clang before 16 cannot capture them directly.
      auto it = std::find_if(fields.begin(), fields.end(), [&, &name = name, &key = key](const FieldRef& f) {
        return f.section == name && f.key == key;
      });
      if (it == fields.end()) return unknown_key(fields, name, key, key_at);
      MEMTRAIN_RETURN_IF_ERROR(assign(*value, *it, position(source, *value)));
    }
  }
  return absl::OkStatus();
}

// One --set "section.key=value", read as the key's type (see parse_config in config.h).
absl::Status apply_override(absl::string_view text, const std::vector<FieldRef>& fields) {
  const size_t eq = text.find('=');
  if (eq == absl::string_view::npos) {
    const std::string what(absl::StripAsciiWhitespace(text));
    return config_error(what.empty() ? "--set" : what,
                        absl::StrCat("--set needs section.key=value, got '", absl::CHexEscape(text), "'"));
  }
  const std::string full(absl::StripAsciiWhitespace(text.substr(0, eq)));
  const std::string value(absl::StripAsciiWhitespace(text.substr(eq + 1)));
  if (full.empty())
    return config_error("--set", absl::StrCat("needs section.key=value, got '", absl::CHexEscape(text), "'"));
  auto it = std::find_if(fields.begin(), fields.end(), [&](const FieldRef& f) { return f.full_key() == full; });
  if (it == fields.end()) {
    const size_t dot = full.find('.');
    if (dot == std::string::npos) return unknown_key(fields, "", full, "--set");
    return unknown_key(fields, full.substr(0, dot), full.substr(dot + 1), "--set");
  }
  const FieldRef& f = *it;
  if (!check_text(value, "--set").ok()) return config_error(f.full_key(), "value is not valid UTF-8 (--set)");
  const bool quoted = !value.empty() && (value[0] == '"' || value[0] == '\'');
  if (f.type == FieldType::kString && !quoted) {
    *static_cast<std::string*>(f.value) = value;
    return absl::OkStatus();
  }
  if (f.type == FieldType::kStringList && (value.empty() || value[0] != '[')) {
    std::vector<std::string> items;
    if (!value.empty()) {
      for (absl::string_view item : absl::StrSplit(value, ',')) {
        item = absl::StripAsciiWhitespace(item);
        if (item.empty())
          return config_error(f.full_key(), absl::StrCat("empty item in list '", absl::CHexEscape(value), "' (--set)"));
        items.emplace_back(item);
      }
    }
    *static_cast<std::vector<std::string>*>(f.value) = std::move(items);
    return absl::OkStatus();
  }
  if (f.type == FieldType::kIntList && (value.empty() || value[0] != '[')) {
    // "3,2,3" or "" (empty): one TOML array, so the items follow the file's integer rules.
    return apply_override(absl::StrCat(full, "=[", value, "]"), fields);
  }
  // Everything else is one TOML value; parsing "v = <value>" reuses the file's rules (1_000, 0x10, 1e-3, 'x').
  absl::StatusOr<toml::table> parsed = parse_toml(absl::StrCat("v = ", value), "--set");
  if (!parsed.ok() || parsed->size() != 1 || parsed->get("v") == nullptr) {
    const bool digits = !value.empty() && std::all_of(value.begin() + (value[0] == '-' || value[0] == '+'), value.end(),
                                                      [](char c) { return absl::ascii_isdigit(c) || c == '_'; });
    if (f.type == FieldType::kInt && digits)
      return config_error(f.full_key(), absl::StrCat("'", value, "' does not fit in a 64-bit integer (--set)"));
    return config_error(f.full_key(), absl::StrCat("expected ", expected_name(f.type), ", got '",
                                                   absl::CHexEscape(value), "' (--set)"));
  }
  return assign(*parsed->get("v"), f, "--set");
}

}  // namespace

std::vector<FieldRef> bind_config_fields(Config& config) {
  std::vector<FieldRef> fields;
  Binder binder{&fields, ""};
  config.visit_sections(binder);
  return fields;
}

absl::string_view field_type_name(FieldType type) {
  switch (type) {
    case FieldType::kInt: return "integer";
    case FieldType::kFloat: return "float";
    case FieldType::kBool: return "boolean";
    case FieldType::kString: return "string";
    case FieldType::kStringList: return "array of strings";
    case FieldType::kIntList: return "array of integers";
  }
  return "?";
}

absl::Status parameter_offload_allowed(const Config& c) {
  if (c.zero.stage != 3)
    return config_error("offload.parameters", absl::StrCat("offloads ZeRO-3's parameter shard; zero.stage is ",
                                                           c.zero.stage));
  if (c.optim.name != "adamw" && c.optim.name != "adamw8bit")
    return config_error("offload.parameters", absl::StrCat("needs an optimizer that updates one piece at a time "
                                                           "(adamw, adamw8bit); optim.name is '", c.optim.name, "'"));
  if (c.zero.hpz_partition_size > 1)
    return config_error("offload.parameters", "keeps no hpZ copy in memory; set zero.hpz_partition_size = 1");
  return absl::OkStatus();
}

// Zeroth-order training (optim.name = "zo_sgd") runs forwards only, and perturbs the values each rank stores.
absl::Status zeroth_order_allowed(const Config& c) {
  const std::string why = "optim.name = \"zo_sgd\" ";
  if (c.parallel.pp > 1) return config_error("parallel.pp", why + "runs without pipeline parallelism (pp = 1)");
  if (c.parallel.cp > 1) return config_error("parallel.cp", why + "runs without context parallelism (cp = 1)");
  if (c.zero.hpz_partition_size > 1)
    return config_error("zero.hpz_partition_size", why + "keeps no hpZ copy (it would hold unperturbed values)");
  if (c.zero.quantized_weights)
    return config_error("zero.quantized_weights", why + "needs exact gathers: int8 would swamp the perturbation");
  if (c.memory.activations == std::vector<std::string>{"auto"})
    return config_error("memory.activations", why + "keeps no activations: there is nothing to plan");
  return absl::OkStatus();
}

// StreamBP's chunks are whole positions of whole sequences on one rank: its first version leaves out the layouts
// that split or relabel positions (cp, SP, packed rows), LoRA dropout, whose masks are drawn per row, and the
// zero-bubble schedule, whose deferred weight gradients would pile up chunk by chunk beyond what the plan counts.
absl::Status stream_allowed(const Config& c) {
  const std::string why = "memory.activations = stream ";
  if (c.parallel.cp_a2a > 1)
    return config_error("parallel.cp_a2a", why + "runs with ring context parallelism only (cp_a2a = 1)");
  if (c.parallel.sequence_parallel)
    return config_error("parallel.sequence_parallel", why + "runs without sequence parallelism");
  if (!c.data.instructions.empty() && c.data.packing)
    return config_error("data.packing", why + "runs on padded rows; set data.packing = false");
  if (c.lora.enabled() && c.lora.dropout > 0)
    return config_error("lora.dropout", why + "runs without dropout (its masks are drawn per row of the batch)");
  if (c.parallel.pp > 1 && c.parallel.pp_schedule == "zb-h1")
    return config_error("parallel.pp_schedule", why + "runs with gpipe, 1f1b or interleaved pipelines, not zb-h1");
  return absl::OkStatus();
}

// LISA (optim.lisa_layers > 0) trains full parameters with a state that follows the drawn blocks.
absl::Status lisa_allowed(const Config& c) {
  if (c.optim.lisa_layers > c.model.n_layer)
    return config_error("optim.lisa_layers", absl::StrCat(c.optim.lisa_layers, " exceeds model.n_layer (",
                                                          c.model.n_layer, ")"));
  if (c.lora.enabled()) return config_error("optim.lisa_layers", "trains full parameters; LoRA is on (lora.r > 0)");
  if (c.parallel.pp > 1)
    return config_error("optim.lisa_layers", "runs without pipeline parallelism (a stage's state would change "
                                             "size with the draw)");
  if (c.snapshot.interval > 0)
    return config_error("optim.lisa_layers", "keeps no in-memory snapshots (set snapshot.interval = 0)");
  if (c.offload.optimizer_on_ssd() || c.offload.parameters_offloaded())
    return config_error("optim.lisa_layers", "keeps its state in memory: offload.optimizer and offload.parameters "
                                             "must be \"none\"");
  return absl::OkStatus();
}

// PeriodicLoRA (lora.periodic_interval > 0) and LoRA-GA (lora.init = "lora_ga") change the frozen base, which every
// rank holds whole (its tp part).
absl::Status base_changing_lora_allowed(const Config& c) {
  const std::string key = c.lora.periodic() ? "lora.periodic_interval" : "lora.init";
  if (c.lora.periodic() && c.zero.stage == 3)
    return config_error("zero.stage", "lora.periodic_interval merges whole adapters into the base on every rank; "
                                      "ZeRO-3 shards them (use zero.stage <= 2)");
  if (c.offload.parameters_offloaded())
    return config_error(key, "changes adapters in memory: offload.parameters must be \"none\"");
  if (c.lora.periodic() && c.offload.optimizer_on_ssd())
    return config_error(key, "restarts the optimizer state in memory: offload.optimizer must be \"none\"");
  if (c.snapshot.interval > 0)
    return config_error(key, "changes the base, which in-memory snapshots do not hold; set snapshot.interval = 0");
  if (c.lora.lora_ga() && c.optim.name == "zo_sgd")
    return config_error("lora.init", "lora_ga estimates a gradient by backward, which zo_sgd runs without");
  return absl::OkStatus();
}

absl::Status Config::validate() const {
  absl::Status status;
  auto check = [&status](const char*, const auto& section) {
    if (status.ok()) status = section.validate();
  };
  const_cast<Config*>(this)->visit_sections(check);  // visit_sections only hands out the sections; check only reads
  MEMTRAIN_RETURN_IF_ERROR(status);

  if (train.seq_len > model.block_size)
    return config_error("train.seq_len",
                        absl::StrCat(train.seq_len, " exceeds model.block_size (", model.block_size, ")"));
  if (data.tokenizer == "byte" && model.vocab_size < 256)
    return config_error("model.vocab_size", absl::StrCat(model.vocab_size,
                                                         " is smaller than the byte tokenizer's 256 (data.tokenizer)"));
  if (optim.schedule != "constant" && optim.decay_steps > 0 && optim.warmup_steps > optim.decay_steps)
    return config_error("optim.warmup_steps", absl::StrCat(optim.warmup_steps, " exceeds optim.decay_steps (",
                                                           optim.decay_steps, ")"));
  if (!data.instructions.empty() && data.packing && (parallel.pp > 1 || parallel.cp > 1))
    return config_error("data.packing", "packed rows run without pipeline and context parallelism (parallel.pp and "
                                        "parallel.cp = 1); set data.packing = false to pad instead");
  if (model.sltrain() && lora.enabled())
    return config_error("lora.r", "fine-tunes dense projections; model.sltrain_rank > 0 trains factored ones");
  if (model.sltrain() && !model.from_hf.empty())
    return config_error("model.sltrain_rank", "SLTrain trains its factors from their initialisation; model.from_hf's "
                                              "dense weights have no place in them");
  if (lora.enabled()) {
    MEMTRAIN_RETURN_IF_ERROR(lora.validate_for(model.arch));
    if (parallel.pp > 1)
      return config_error("parallel.pp", absl::StrCat(parallel.pp, " pipeline stages: LoRA fine-tuning runs without "
                                                      "pipeline parallelism (lora.r > 0)"));
    if (lora.dropout > 0 && parallel.cp > 1)
      return config_error("lora.dropout", "runs without context parallelism (parallel.cp = 1)");
    if (lora.changes_base()) MEMTRAIN_RETURN_IF_ERROR(base_changing_lora_allowed(*this));
    if (lora.quailora() && offload.parameters_offloaded())
      return config_error("lora.init", "quailora sets the adapters in memory: offload.parameters must be \"none\"");
  }
  if (memory.activations == std::vector<std::string>{"auto"}) {
    if (memory.budget_bytes() == 0)
      return config_error("memory.activations", "\"auto\" chooses policies that fit memory.budget; set one");
  } else {
    MEMTRAIN_ASSIGN_OR_RETURN(const model::ActivationPolicy policy, memory.activation_policy(model.n_layer));
    if (policy.uses_ssd_tier() && offload.ssd_path.empty())
      return config_error("offload.ssd_path",
                          "must name a directory: memory.activations uses swap_ssd or stream_swap_ssd");
    if (policy.streams_any()) MEMTRAIN_RETURN_IF_ERROR(stream_allowed(*this));
  }
  if (offload.optimizer_on_ssd() && optim.name != "adamw")
    return config_error("offload.optimizer", absl::StrCat("\"ssd\" streams AdamW's moments; optim.name is '",
                                                          optim.name, "'"));
  if (offload.parameters_offloaded()) MEMTRAIN_RETURN_IF_ERROR(parameter_offload_allowed(*this));
  if (optim.name == "zo_sgd") MEMTRAIN_RETURN_IF_ERROR(zeroth_order_allowed(*this));
  if (optim.lisa_layers > 0) MEMTRAIN_RETURN_IF_ERROR(lisa_allowed(*this));
  if (parallel.dp > 0 && parallel.dp % zero.hpz_partition_size != 0)
    return config_error("zero.hpz_partition_size", absl::StrCat(zero.hpz_partition_size,
                                                                " does not divide parallel.dp (", parallel.dp, ")"));
  return absl::OkStatus();
}

absl::StatusOr<Config> parse_config(absl::string_view toml_text, absl::string_view source_name,
                                    const std::vector<std::string>& overrides, bool validate) {
  MEMTRAIN_RETURN_IF_ERROR(check_text(toml_text, source_name));
  MEMTRAIN_ASSIGN_OR_RETURN(toml::table root, parse_toml(toml_text, source_name));
  Config config;
  const std::vector<FieldRef> fields = bind_config_fields(config);
  MEMTRAIN_RETURN_IF_ERROR(apply_table(root, fields, source_name));
  for (const std::string& o : overrides) MEMTRAIN_RETURN_IF_ERROR(apply_override(o, fields));
  if (validate) {
    MEMTRAIN_RETURN_IF_ERROR(read_hf_model_config(config.model));
    MEMTRAIN_RETURN_IF_ERROR(config.validate());
  }
  return config;
}

absl::StatusOr<Config> load_config(const std::string& path, const std::vector<std::string>& overrides) {
  auto io_error = [&](int err) {
    const std::string msg = absl::StrCat(path, ": cannot read: ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::InvalidArgumentError(msg);
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error(errno);
  std::string text;
  struct stat st;
  int err = 0;
  if (::fstat(fd, &st) != 0) err = errno;
  else if (S_ISDIR(st.st_mode)) err = EISDIR;
  char buf[1 << 16];
  while (err == 0) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = errno;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (err != 0) return io_error(err);
  return parse_config(text, path, overrides);
}

}  // namespace memtrain::trainer
