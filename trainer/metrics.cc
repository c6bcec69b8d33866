// metrics.jsonl writer (one write() per line, torn lines cut back on failure) and the progress line.
#include "trainer/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/file_io.h"
#include "core/fault_injection.h"
#include "core/status.h"

namespace memtrain::trainer {

absl::StatusOr<MetricsLog> MetricsLog::open(const std::string& path, int64_t resumed_step) {
  if (resumed_step > 0) {
    // The lines up to the resumed step stay (complete ones only); the resumed run logs the later steps again.
    std::string kept;
    if (auto text = read_file(path); text.ok()) {
      for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
        const auto j = nlohmann::json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
        if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
            j["step"].get<int64_t>() <= resumed_step) {
          absl::StrAppend(&kept, line, "\n");
        }
      }
    }
    MEMTRAIN_RETURN_IF_ERROR(write_file_atomically(path, {kept}));
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | (resumed_step > 0 ? O_APPEND : O_TRUNC) | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error(path, "cannot open", errno);
  MetricsLog log(fd, path);
  log.size_ = ::lseek(fd, 0, SEEK_END);  // where a failed write cuts back to
  return log;
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status MetricsLog::write_line(const std::string& line) {
  MEMTRAIN_FAULT_POINT("metrics.before_line");
  // Unbuffered, so a killed run keeps every line it logged; a full disk leaves the last complete line last.
  MEMTRAIN_RETURN_IF_ERROR(append_whole(fd_, path_, line + "\n", &size_));
  MEMTRAIN_FAULT_POINT("metrics.after_line");
  return absl::OkStatus();
}

absl::Status MetricsLog::log_step(const StepMetrics& m) {
  nlohmann::json mem = nlohmann::json::object();
  for (int c = 0; c < kNumMemCategories; ++c) mem[std::string(mem_category_name(static_cast<MemCategory>(c)))] = m.mem.peak[c];
  nlohmann::json j = {{"step", m.step},           {"loss", m.loss},       {"lr", m.lr},
                      {"grad_norm", m.grad_norm}, {"tokens_per_s", m.tokens_per_s},
                      {"step_ms", m.step_ms},     {"mfu", m.mfu},         {"mem", mem},
                      {"comm_bytes", m.comm_bytes}, {"comm_ms", m.comm_ms}, {"io_ms", m.io_ms},
                      {"compute_ms", m.compute_ms}};
  if (m.snapshot_bytes >= 0) j["snapshot_bytes"] = m.snapshot_bytes;
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
