// The [zero] section: which model states are sharded across the data-parallel ranks (ZeRO stages) and the
// hierarchical secondary partition of ZeRO++ (hpZ). trainer/config walks `visit` to parse, dump and document it.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace memtrain::parallel {

struct ZeroConfig {
  int64_t stage = 0;
  int64_t hpz_partition_size = 1;
  bool quantized_weights = false;

  template <class V> void visit(V& v) {
    v("stage", stage,
      "0 = replicated (DDP), 1 = shard optimizer states, 2 = also gradients, 3 = also parameters (gathered per "
      "layer before use)");
    v("hpz_partition_size", hpz_partition_size,
      "stage 3: keep a second copy of the parameters sharded over groups of this many neighbouring dp ranks, so "
      "backward gathers stay inside the group; 1 = off; must divide parallel.dp");
    v("quantized_weights", quantized_weights,
      "stage 3: gather parameters from all dp ranks as int8 with one fp32 scale per 256 values (ZeRO++ qwZ, about "
      "a quarter of the bytes); forward and backward then see the dequantized values, the optimizer the fp32 shard");
  }
  // Whether hpZ keeps a secondary copy at data-parallel size dp: a group larger than one rank and smaller than dp.
  bool hpz_active(int64_t dp) const { return stage == 3 && hpz_partition_size > 1 && hpz_partition_size < dp; }
  // Range checks; that hpz_partition_size divides dp is checked with the mesh.
  absl::Status validate() const;
};

}  // namespace memtrain::parallel
