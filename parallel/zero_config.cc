#include "parallel/zero_config.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::parallel {

absl::Status ZeroConfig::validate() const {
  if (stage < 0 || stage > 3) return config_error("zero.stage", absl::StrCat("must be 0, 1, 2 or 3, got ", stage));
  if (hpz_partition_size < 1)
    return config_error("zero.hpz_partition_size", absl::StrCat("must be >= 1, got ", hpz_partition_size));
  if (hpz_partition_size > 1 && stage != 3)
    return config_error("zero.hpz_partition_size", absl::StrCat("is ", hpz_partition_size,
                                                                " but hpZ partitions stage-3 parameters; zero.stage is ",
                                                                stage));
  if (quantized_weights && stage != 3)
    return config_error("zero.quantized_weights",
                        absl::StrCat("quantizes stage-3 parameter gathers, but zero.stage is ", stage));
  return absl::OkStatus();
}

}  // namespace memtrain::parallel
