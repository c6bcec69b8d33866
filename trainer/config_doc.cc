// Config -> text: the resolved-config dump (TOML that parse_config reads back to an equal config) and the key
// reference that configs/README.md holds. Both walk bind_config_fields, so no key can be left out.
#include <charconv>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "trainer/config.h"

namespace memtrain::trainer {
namespace {

// A TOML basic string. Control characters are escaped; other bytes (UTF-8) pass through.
std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\f': out += "\\f"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7F) out += absl::StrFormat("\\u%04X", c);
        else out += ch;
    }
  }
  return out + "\"";
}

// The shortest text that reads back to the same double ("0.1", "1e-08"), with ".0" added so TOML sees a float.
std::string toml_float(double d) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, d);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // 'n': inf and nan, which validation rejects anyway
  return s;
}

std::string toml_value(const FieldRef& f) {
  switch (f.type) {
    case FieldType::kInt: return absl::StrCat(*static_cast<const int64_t*>(f.value));
    case FieldType::kFloat: return toml_float(*static_cast<const double*>(f.value));
    case FieldType::kBool: return *static_cast<const bool*>(f.value) ? "true" : "false";
    case FieldType::kString: return toml_string(*static_cast<const std::string*>(f.value));
    case FieldType::kStringList: {
      std::string out = "[";
      const auto& items = *static_cast<const std::vector<std::string>*>(f.value);
      for (size_t i = 0; i < items.size(); ++i) absl::StrAppend(&out, i ? ", " : "", toml_string(items[i]));
      return out + "]";
    }
    case FieldType::kIntList:
      return absl::StrCat("[", absl::StrJoin(*static_cast<const std::vector<int64_t>*>(f.value), ", "), "]");
  }
  return "";
}

std::string markdown_cell(absl::string_view s) { return absl::StrReplaceAll(s, {{"|", "\\|"}}); }

}  // namespace

std::string dump_config(const Config& config) {
  Config copy = config;  // bind_config_fields hands out mutable pointers; the dump only reads them
  std::string out = "# memtrain config, resolved: every key of every section, defaults included.\n";
  std::string section;
  for (const FieldRef& f : bind_config_fields(copy)) {
    if (f.section != section) {
      section = f.section;
      absl::StrAppend(&out, "\n[", section, "]\n");
    }
    absl::StrAppend(&out, f.key, " = ", toml_value(f), "  # ", f.doc, "\n");
  }
  return out;
}

std::string config_reference_markdown() {
  Config defaults;
  std::string out;
  std::string section;
  for (const FieldRef& f : bind_config_fields(defaults)) {
    if (f.section != section) {
      section = f.section;
      absl::StrAppend(&out, out.empty() ? "" : "\n", "### [", section, "]\n\n", "| key | type | default | meaning |\n",
                      "|---|---|---|---|\n");
    }
    absl::StrAppend(&out, "| `", f.full_key(), "` | ", field_type_name(f.type), " | `", markdown_cell(toml_value(f)),
                    "` | ", markdown_cell(f.doc), " |\n");
  }
  return out;
}

}  // namespace memtrain::trainer
