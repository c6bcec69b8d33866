// Fuzz target for the run configuration: TOML text plus --set overrides (trainer::parse_config).
// Input layout: TOML text, then up to 8 overrides, separated by the byte 0xFF (never valid in UTF-8, so no TOML
// text or override value is lost by reserving it). Whatever the input, parse_config must return a status rather
// than crash, throw or trip a sanitizer; a config it accepts must survive dump_config -> parse_config unchanged.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "tests/fuzz/fuzz_util.h"
#include "trainer/config.h"

namespace {
constexpr char kSeparator = '\xff';
constexpr size_t kMaxOverrides = 8;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace memtrain;
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  size_t cut = input.find(kSeparator);
  const absl::string_view toml = input.substr(0, cut);
  std::vector<std::string> overrides;
  while (cut != absl::string_view::npos && overrides.size() < kMaxOverrides) {
    const size_t next = input.find(kSeparator, cut + 1);
    overrides.emplace_back(input.substr(cut + 1, next == absl::string_view::npos ? next : next - cut - 1));
    cut = next;
  }

  absl::StatusOr<trainer::Config> config = trainer::parse_config(toml, "fuzz.toml", overrides);
  if (!config.ok()) {
    if (config.status().message().empty()) fuzz::fail("parse_config failed without a message");
    return 0;
  }
  // The dump is documented to read back to an equal config; compare the dumps (Config has no operator==).
  const std::string dumped = trainer::dump_config(*config);
  absl::StatusOr<trainer::Config> again = trainer::parse_config(dumped, "dump.toml", {});
  if (!again.ok()) {
    std::fprintf(stderr, "%s\n--- dump ---\n%s\n", std::string(again.status().ToString()).c_str(), dumped.c_str());
    fuzz::fail("dump_config of an accepted config does not parse back");
  }
  if (trainer::dump_config(*again) != dumped) fuzz::fail("dump_config -> parse_config changed the config");
  return 0;
}
