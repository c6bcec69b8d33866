// Whole-file reads and crash-safe writes for data files: errors name the path, the action and errno's reason.
#pragma once

#include "absl/types/span.h"
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace memtrain {

// "data/train.bin: cannot open: No such file or directory", with a code that fits errno (ENOENT -> NotFound,
// EACCES -> PermissionDenied, ENOSPC -> ResourceExhausted, else Internal).
absl::Status errno_error(absl::string_view path, absl::string_view action, int err);

absl::StatusOr<std::string> read_file(const std::string& path);

// Writes the concatenated pieces to path + ".tmp", fsyncs it, renames it over `path` and fsyncs the directory.
// A crash or a full disk leaves either the previous file or the complete new one under `path`, never a mix; on
// failure the temporary file is removed.
absl::Status write_file_atomically(const std::string& path, absl::Span<const absl::string_view> pieces);

// For a file another library wrote at `tmp` (closed): fsyncs it, renames it over `path`, fsyncs the directory.
absl::Status commit_file(const std::string& tmp, const std::string& path);

// Appends `data` to the open file `fd` (named `path` in errors) whose complete contents end at *end, whole or not
// at all: a full disk can accept part of a write (a short write, then ENOSPC), so on failure the file is cut back
// to *end and the error is returned. On success *end moves past the data. For logs read while they grow
// (metrics.jsonl, TensorBoard event files), whose readers must never see a torn record.
absl::Status append_whole(int fd, const std::string& path, absl::string_view data, int64_t* end);

}  // namespace memtrain
