// Run metrics: output.dir/metrics.jsonl (one JSON object per logged step or evaluation, the contract scripts rely
// on) and the human progress line printed every train.log_interval steps.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "core/memory.h"

namespace memtrain::trainer {

struct StepMetrics {
  int64_t step = 0;  // 1-based: steps completed
  int64_t max_steps = 0;
  double loss = 0, lr = 0, grad_norm = 0;
  double tokens_per_s = 0, step_ms = 0;  // step_ms: with the step's checkpoint and snapshot stalls, not evaluations
  double mfu = 0;  // achieved / measured sgemm peak
  double eta_s = 0;
  MemorySnapshot mem;
  int64_t snapshot_bytes = -1;  // bytes this rank sent for in-memory snapshots so far (parity, rebuilds); -1: none
  // Per step, means over the steps since the last line. comm_bytes: what this rank sent over its communicators;
  // comm_ms: the time it waited on them (communication that compute did not hide); io_ms: the time in data
  // loading, checkpoint saves and snapshot copies (their stalls: background work is not counted); compute_ms: the
  // rest of step_ms.
  int64_t comm_bytes = 0;
  double comm_ms = 0, io_ms = 0, compute_ms = 0;
};

class MetricsLog {
 public:
  // A fresh run truncates `path`; a run resumed after `resumed_step` steps keeps the lines of the steps up to it and
  // appends after them.
  static absl::StatusOr<MetricsLog> open(const std::string& path, int64_t resumed_step = 0);
  MetricsLog(MetricsLog&& o) noexcept : fd_(o.fd_), size_(o.size_), path_(std::move(o.path_)) { o.fd_ = -1; }
  MetricsLog(const MetricsLog&) = delete;
  ~MetricsLog();

  absl::Status log_step(const StepMetrics& m);
  absl::Status log_eval(int64_t step, double val_loss);

 private:
  MetricsLog(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  // Appends line + '\n' whole or not at all: a failed write (full disk) is cut back to the last complete line, so
  // readers of metrics.jsonl never see a torn line.
  absl::Status write_line(const std::string& line);
  int fd_;
  int64_t size_ = 0;  // bytes of complete lines in the file
  std::string path_;
};

// "step 120/2000 | loss 2.1345 | lr 1.00e-03 | norm 0.912 | 45.3k tok/s | 45 ms | MFU 31.2% |
//  peak 160.0 MiB (param 12.4 MiB, grad 12.4 MiB, optim 24.9 MiB, act 110.3 MiB, work 64.0 KiB) | ETA 3m12s"
std::string progress_line(const StepMetrics& m);

}  // namespace memtrain::trainer
