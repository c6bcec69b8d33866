// Range checks of the [parallel] section; the product rule needs the world size and lives in device_mesh.cc.
#include "parallel/parallel_config.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "parallel/pipeline_schedule.h"

namespace memtrain::parallel {

absl::Status ParallelConfig::validate() const {
  if (dp != -1 && dp < 1)
    return config_error("parallel.dp", absl::StrCat("must be >= 1 or -1 (the rest), got ", dp));
  if (tp < 1) return config_error("parallel.tp", absl::StrCat("must be >= 1, got ", tp));
  if (pp < 1) return config_error("parallel.pp", absl::StrCat("must be >= 1, got ", pp));
  if (cp < 1) return config_error("parallel.cp", absl::StrCat("must be >= 1, got ", cp));
  if (cp_a2a < 1 || cp % cp_a2a != 0)
    return config_error("parallel.cp_a2a", absl::StrCat(cp_a2a, " must be >= 1 and divide parallel.cp = ", cp));
  if (cp_ring != -1 && cp_ring * cp_a2a != cp)
    return config_error("parallel.cp_ring", absl::StrCat("parallel.cp_a2a * parallel.cp_ring = ", cp_a2a, " * ",
                                                         cp_ring, " must equal parallel.cp = ", cp, " (or -1)"));
  if (absl::StatusOr<ScheduleKind> kind = parse_schedule_kind(pp_schedule); !kind.ok()) {
    return config_error("parallel.pp_schedule", kind.status().message());
  } else if ((*kind == ScheduleKind::kInterleaved) != (pp_chunks > 1) || pp_chunks < 1) {
    return config_error("parallel.pp_chunks",
                        absl::StrCat(pp_chunks, " with pp_schedule = \"", pp_schedule, "\": the interleaved schedule "
                                     "takes >= 2 chunks per rank, the others 1"));
  }
  if (!pp_layers.empty()) {
    const int64_t stages = pp * pp_chunks;
    if (static_cast<int64_t>(pp_layers.size()) != stages)
      return config_error("parallel.pp_layers", absl::StrCat(pp_layers.size(), " entries for ", stages,
                                                             " stages (parallel.pp * parallel.pp_chunks)"));
    for (int64_t s = 0; s < stages; ++s) {
      const int64_t least = s == 0 || s == stages - 1 ? 0 : 1;
      if (pp_layers[s] < least)
        return config_error("parallel.pp_layers", absl::StrCat("stage ", s, " has ", pp_layers[s], " layers; ",
                                                               least == 0 ? "the first and last stage need >= 0"
                                                                          : "a middle stage needs >= 1"));
    }
  }
  // Written as !(x > 0) so that NaN fails too.
  if (!(timeout_s > 0)) return config_error("parallel.timeout_s", absl::StrCat("must be > 0, got ", timeout_s));
  if (!(bucket_mb > 0)) return config_error("parallel.bucket_mb", absl::StrCat("must be > 0, got ", bucket_mb));
  return absl::OkStatus();
}

}  // namespace memtrain::parallel
