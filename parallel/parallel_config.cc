// Range checks of the [parallel] section; the product rule needs the world size and lives in device_mesh.cc.
#include "parallel/parallel_config.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::parallel {

absl::Status ParallelConfig::validate() const {
  if (dp != -1 && dp < 1)
    return config_error("parallel.dp", absl::StrCat("must be >= 1 or -1 (the rest), got ", dp));
  if (tp < 1) return config_error("parallel.tp", absl::StrCat("must be >= 1, got ", tp));
  if (pp < 1) return config_error("parallel.pp", absl::StrCat("must be >= 1, got ", pp));
  if (cp < 1) return config_error("parallel.cp", absl::StrCat("must be >= 1, got ", cp));
  // Written as !(x > 0) so that NaN fails too.
  if (!(timeout_s > 0)) return config_error("parallel.timeout_s", absl::StrCat("must be > 0, got ", timeout_s));
  if (!(bucket_mb > 0)) return config_error("parallel.bucket_mb", absl::StrCat("must be > 0, got ", bucket_mb));
  return absl::OkStatus();
}

}  // namespace memtrain::parallel
