// Range checks of the [train], [output] and [memory] sections, and the byte-size parser behind memory.budget.
#include "trainer/train_config.h"

#include <cctype>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::trainer {
namespace {

absl::Status positive(const char* key, int64_t v) {
  return v > 0 ? absl::OkStatus() : config_error(key, absl::StrCat("must be > 0, got ", v));
}
// zero_note: what 0 means, e.g. " (0 = all cores)".
absl::Status non_negative(const char* key, int64_t v, absl::string_view zero_note = "") {
  return v >= 0 ? absl::OkStatus() : config_error(key, absl::StrCat("must be >= 0", zero_note, ", got ", v));
}

}  // namespace

absl::Status TrainConfig::validate() const {
  MEMTRAIN_RETURN_IF_ERROR(positive("train.max_steps", max_steps));
  MEMTRAIN_RETURN_IF_ERROR(positive("train.batch_size", batch_size));
  MEMTRAIN_RETURN_IF_ERROR(positive("train.grad_accum", grad_accum));
  MEMTRAIN_RETURN_IF_ERROR(non_negative("train.seq_len", seq_len, " (0 = model.block_size)"));
  MEMTRAIN_RETURN_IF_ERROR(non_negative("train.seed", seed));
  MEMTRAIN_RETURN_IF_ERROR(non_negative("train.threads", threads, " (0 = all cores)"));
  MEMTRAIN_RETURN_IF_ERROR(positive("train.log_interval", log_interval));
  MEMTRAIN_RETURN_IF_ERROR(non_negative("train.eval_interval", eval_interval, " (0 = only at the end)"));
  MEMTRAIN_RETURN_IF_ERROR(positive("train.eval_batches", eval_batches));
  MEMTRAIN_RETURN_IF_ERROR(non_negative("train.checkpoint_interval", checkpoint_interval, " (0 = none)"));
  MEMTRAIN_RETURN_IF_ERROR(positive("train.keep_checkpoints", keep_checkpoints));
  if (checkpoint_failure != "stop" && checkpoint_failure != "continue")
    return config_error("train.checkpoint_failure",
                        absl::StrCat("must be \"stop\" or \"continue\", got '", checkpoint_failure, "'"));
  if (!resume.empty() && resume != "auto")
    return config_error("train.resume", absl::StrCat("must be \"auto\" or \"\", got '", resume, "'"));
  return absl::OkStatus();
}

absl::Status OutputConfig::validate() const {
  if (dir.empty()) return config_error("output.dir", "must not be empty");
  MEMTRAIN_RETURN_IF_ERROR(non_negative("output.samples", samples));
  MEMTRAIN_RETURN_IF_ERROR(non_negative("output.sample_tokens", sample_tokens));
  if (!(temperature > 0)) return config_error("output.temperature", absl::StrCat("must be > 0, got ", temperature));
  MEMTRAIN_RETURN_IF_ERROR(non_negative("output.top_k", top_k, " (0 = off)"));
  return absl::OkStatus();
}

absl::Status MemoryConfig::validate() const {
  absl::StatusOr<int64_t> bytes = parse_bytes(budget);
  if (!bytes.ok()) return config_error("memory.budget", bytes.status().message());
  MEMTRAIN_RETURN_IF_ERROR(non_negative("memory.recompute_segment", recompute_segment, " (0 = ceil(sqrt(n_layer)))"));
  MEMTRAIN_RETURN_IF_ERROR(non_negative("memory.stream_chunk", stream_chunk, " (0 = a third of the sequence)"));
  if (!(stream_swap_fraction >= 0 && stream_swap_fraction <= 1))
    return config_error("memory.stream_swap_fraction", absl::StrCat("must be in [0, 1], got ", stream_swap_fraction));
  return absl::OkStatus();
}

absl::Status OffloadConfig::validate() const {
  if (optimizer != "none" && optimizer != "ssd")
    return config_error("offload.optimizer", absl::StrCat("must be \"none\" or \"ssd\", got '", optimizer, "'"));
  if (optimizer_on_ssd() && ssd_path.empty())
    return config_error("offload.ssd_path", "must name a directory: offload.optimizer = \"ssd\"");
  if (parameters != "none" && parameters != "host" && parameters != "ssd")
    return config_error("offload.parameters",
                        absl::StrCat("must be \"none\", \"host\" or \"ssd\", got '", parameters, "'"));
  if (parameters == "ssd" && ssd_path.empty())
    return config_error("offload.ssd_path", "must name a directory: offload.parameters = \"ssd\"");
  return absl::OkStatus();
}

absl::Status SnapshotConfig::validate() const {
  if (interval < 0) return config_error("snapshot.interval", absl::StrCat("must be >= 0, got ", interval));
  if (k < 1) return config_error("snapshot.k", absl::StrCat("must be >= 1, got ", k));
  if (m < 0 || k + m > 256) return config_error("snapshot.m", absl::StrCat("must be >= 0 with k + m <= 256, got ", m));
  if (keeper_timeout_s < 1)
    return config_error("snapshot.keeper_timeout_s", absl::StrCat("must be >= 1, got ", keeper_timeout_s));
  if (ranks_per_node < 0)
    return config_error("snapshot.ranks_per_node", absl::StrCat("must be >= 0, got ", ranks_per_node));
  if (job.size() > 40)  // it names the keeper's socket, whose path has room for 107 bytes
    return config_error("snapshot.job", absl::StrCat("at most 40 characters, got ", job.size()));
  for (char c : job) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-')
      return config_error("snapshot.job", absl::StrCat("letters, digits, '_' and '-' only, got '", job, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<model::ActivationPolicy> MemoryConfig::activation_policy(int64_t n_layer) const {
  absl::StatusOr<model::ActivationPolicy> policy = model::ActivationPolicy::parse(activations, recompute_segment, n_layer);
  if (!policy.ok()) return config_error("memory.activations", policy.status().message());
  policy->stream_chunk = stream_chunk;
  policy->stream_swap_fraction = stream_swap_fraction;
  return policy;
}

int64_t MemoryConfig::budget_bytes() const {
  absl::StatusOr<int64_t> bytes = parse_bytes(budget);
  return bytes.ok() ? *bytes : 0;
}

absl::StatusOr<int64_t> parse_bytes(absl::string_view text) {
  const absl::string_view s = absl::StripAsciiWhitespace(text);
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text, "' is not a byte size (", why, "); write an integer or e.g. \"512MiB\", \"2GiB\", \"1.5GB\""));
  };
  size_t i = 0;
  int64_t whole = 0;
  bool any_digit = false;
  for (; i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i])); ++i) {
    any_digit = true;
    const int d = s[i] - '0';
    if (whole > (std::numeric_limits<int64_t>::max() - d) / 10) return bad("too large");
    whole = whole * 10 + d;
  }
  // The fraction's digits, kept as an exact decimal: bytes = whole * mult + floor(frac_num * mult / frac_den).
  int64_t frac_num = 0, frac_den = 1;
  bool has_fraction = false;
  if (i < s.size() && s[i] == '.') {
    has_fraction = true;
    ++i;
    for (; i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i])); ++i) {
      any_digit = true;
      if (frac_den <= std::numeric_limits<int64_t>::max() / 100) {  // beyond 17 digits the rest cannot matter
        frac_num = frac_num * 10 + (s[i] - '0');
        frac_den *= 10;
      }
    }
  }
  if (!any_digit) return bad(s.empty() ? "empty" : s[0] == '-' ? "negative" : "no number");
  absl::string_view suffix = absl::StripLeadingAsciiWhitespace(s.substr(i));
  const std::string unit = absl::AsciiStrToLower(suffix);
  int64_t mult = 0;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "kb") mult = 1000;
  else if (unit == "mb") mult = 1000 * 1000;
  else if (unit == "gb") mult = 1000 * 1000 * 1000;
  else if (unit == "tb") mult = int64_t{1000} * 1000 * 1000 * 1000;
  else if (unit == "kib") mult = int64_t{1} << 10;
  else if (unit == "mib") mult = int64_t{1} << 20;
  else if (unit == "gib") mult = int64_t{1} << 30;
  else if (unit == "tib") mult = int64_t{1} << 40;
  else return bad(absl::StrCat("unknown unit '", suffix, "'"));
  if (has_fraction && mult == 1) return bad("a fraction of a byte");
  if (whole > std::numeric_limits<int64_t>::max() / mult) return bad("too large");
  // frac_num < frac_den <= 1e17 and mult <= 2^40: the product can overflow int64, so it is taken in __int128.
  const __int128 frac_bytes = static_cast<__int128>(frac_num) * mult / frac_den;
  const __int128 total = static_cast<__int128>(whole) * mult + frac_bytes;
  if (total > std::numeric_limits<int64_t>::max()) return bad("too large");
  return static_cast<int64_t>(total);
}

}  // namespace memtrain::trainer
