// TensorBoard event files (output.tensorboard = true): the scalars of metrics.jsonl in
// output.dir/tensorboard/events.out.tfevents.<unix seconds>.<host>.<pid>, for `tensorboard --logdir output.dir`.
// The format is TFRecord: frames of (length, masked CRC-32C of the length, an Event protocol buffer, masked CRC-32C
// of the Event). The two messages used (Event with a Summary of simple values) are encoded here by hand, so
// memtrain needs neither protobuf nor TensorFlow.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/metrics.h"

namespace memtrain::trainer {

// CRC-32C (Castagnoli, reflected, as iSCSI and TFRecord use it): crc32c("123456789") == 0xE3069283.
uint32_t crc32c(const void* data, size_t n);

class TensorBoardLog {
 public:
  // Creates `dir` and a new event file in it, starting with the file-version event. Every run (a resumed one too)
  // writes a file of its own; TensorBoard reads a directory's files in name order and, when steps go back (a run
  // resumed from an earlier checkpoint), drops the steps of the old file past the restart.
  static absl::StatusOr<TensorBoardLog> open(const std::string& dir);
  TensorBoardLog(TensorBoardLog&& o) noexcept : fd_(o.fd_), size_(o.size_), path_(std::move(o.path_)) { o.fd_ = -1; }
  TensorBoardLog(const TensorBoardLog&) = delete;
  ~TensorBoardLog();

  // train/loss, train/lr, train/grad_norm, train/tokens_per_s, train/mfu, time/step_ms, time/compute_ms,
  // time/comm_ms, time/io_ms, comm/bytes_per_step and memory/<category> (peak bytes) at m.step.
  absl::Status log_step(const StepMetrics& m);
  // val/loss at `step`.
  absl::Status log_eval(int64_t step, double val_loss);
  // One Event at `step` holding these tag/value scalars (stored as float, as TensorBoard's simple values are).
  absl::Status scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values);

  const std::string& path() const { return path_; }

 private:
  TensorBoardLog(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  // Appends one TFRecord frame whole or not at all (a failed write is cut back), as metrics.jsonl's lines are.
  absl::Status write_record(const std::string& event);
  int fd_;
  int64_t size_ = 0;
  std::string path_;
};

}  // namespace memtrain::trainer
