#include "data/data_config.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::data {

absl::Status DataConfig::validate() const {
  const int sources = !dataset.empty() + !text.empty() + !instructions.empty();
  if (sources == 0) return config_error("data.dataset", "set data.dataset, data.text or data.instructions");
  if (sources > 1)
    return config_error(!instructions.empty() ? "data.instructions" : "data.text",
                        "set one of data.dataset, data.text and data.instructions");
  if (!(val_fraction > 0 && val_fraction < 1))
    return config_error("data.val_fraction", absl::StrCat("must be in (0, 1), got ", val_fraction));
  if (tokenizer.empty()) return config_error("data.tokenizer", "must be byte or the path of a tokenizer");
  return absl::OkStatus();
}

}  // namespace memtrain::data
