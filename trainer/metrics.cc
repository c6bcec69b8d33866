#include "trainer/metrics.h"

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace memtrain::trainer {

absl::StatusOr<MetricsLog> MetricsLog::open(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return absl::InternalError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  return MetricsLog(f, path);
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

absl::Status MetricsLog::write_line(const std::string& line) {
  // Flushed per line so a killed run keeps every line it logged; a full disk is reported, not ignored.
  if (std::fputs(line.c_str(), file_) < 0 || std::fputc('\n', file_) < 0 || std::fflush(file_) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat(path_, ": cannot write: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status MetricsLog::log_step(const StepMetrics& m) {
  nlohmann::json mem = nlohmann::json::object();
  for (int c = 0; c < kNumMemCategories; ++c) mem[std::string(mem_category_name(static_cast<MemCategory>(c)))] = m.mem.peak[c];
  nlohmann::json j = {{"step", m.step},           {"loss", m.loss},       {"lr", m.lr},
                      {"grad_norm", m.grad_norm}, {"tokens_per_s", m.tokens_per_s},
                      {"step_ms", m.step_ms},     {"mfu", m.mfu},         {"mem", mem}};
  return write_line(j.dump());
}

absl::Status MetricsLog::log_eval(int64_t step, double val_loss) {
  return write_line(nlohmann::json({{"step", step}, {"val_loss", val_loss}}).dump());
}

std::string progress_line(const StepMetrics& m) {
  const int64_t eta = static_cast<int64_t>(m.eta_s + 0.5);
  const std::string tps = m.tokens_per_s >= 1000 ? absl::StrFormat("%.1fk", m.tokens_per_s / 1000)
                                                 : absl::StrFormat("%.0f", m.tokens_per_s);
  // The peak of every category in use, abbreviated: "param 12.43 MiB, act 110.27 MiB".
  static constexpr const char* kShort[kNumMemCategories] = {"param", "grad", "optim", "act", "comm", "work", "swap"};
  std::string mem;
  for (int c = 0; c < kNumMemCategories; ++c) {
    if (m.mem.peak[c] == 0) continue;
    absl::StrAppend(&mem, mem.empty() ? "" : ", ", kShort[c], " ", format_bytes(m.mem.peak[c]));
  }
  return absl::StrFormat("step %6d/%d | loss %.4f | lr %.2e | norm %.3f | %s tok/s | %.0f ms | MFU %.1f%% | "
                         "peak %s (%s) | ETA %dm%02ds",
                         m.step, m.max_steps, m.loss, m.lr, m.grad_norm, tps, m.step_ms, 100 * m.mfu,
                         format_bytes(m.mem.total_peak), mem, eta / 60, eta % 60);
}

}  // namespace memtrain::trainer
