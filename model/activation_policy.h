// How each transformer block keeps what its backward needs (memory.activations): `keep` saves everything in the
// activation store; `recompute` saves only the input of each recompute segment (a run of up to `segment`
// consecutive recompute blocks, the sqrt(n) rule of Chen et al. when segment = ceil(sqrt(n_layer))) and runs the
// segment's forward again just before its backward; `recompute_attention` (Megatron's selective recompute) leaves
// out the attention core's output and log-sum-exps, which backward recomputes from q, k and v; `swap_host` and
// `swap_ssd` send the block's saved tensors to a swap tier (offload/) while forward goes on and bring them back
// ahead of backward. Recomputed and swapped tensors are the same bits as the first forward's, so gradients do not
// change. `compress` keeps the inputs of the block's projections as int8 blocks with one fp32 absmax scale per 64
// values (the idea of Few-bit backward and DIVISION): only the weight gradients read them, each value off by at
// most scale / 2 = absmax / 254. `stream` (StreamBP, stream_block.h) saves only the block's input, as a recompute
// segment of one block does, and runs the block's forward and backward `stream_chunk` positions at a time, so
// besides its input, output, keys and values it holds one chunk's worth; its results are the others' up to the
// order of sums. `stream_swap_host` and `stream_swap_ssd` (token-wise swap, the idea of MEMO) are stream blocks
// whose last chunks (a fraction `stream_swap_fraction` of them: their queries see the longest prefix, so their
// forward costs most to run again) send what their forward saves to a swap tier, chunk by chunk while forward goes
// on, and read it back ahead of their backward instead of running their forward again; the same bits as stream.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace memtrain::model {

enum class LayerPolicy : uint8_t {
  kKeep,
  kRecompute,
  kRecomputeAttention,
  kSwapHost,
  kSwapSsd,
  kCompress,
  kStream,
  kStreamSwapHost,
  kStreamSwapSsd,
};

absl::StatusOr<LayerPolicy> parse_layer_policy(absl::string_view name);  // InvalidArgument lists the names
absl::string_view layer_policy_name(LayerPolicy p);

struct ActivationPolicy {
  std::vector<LayerPolicy> layers;  // one per global layer; empty: keep everywhere
  int64_t segment = 1;              // recompute blocks checkpointed together
  int64_t stream_chunk = 0;         // positions per StreamBP chunk; 0: a third of the sequence
  double stream_swap_fraction = 1;  // of a stream_swap block's chunks, the last ones, swapped

  // The chunk a stream block's backward uses on sequences of T positions (this rank's, with cp).
  int64_t stream_chunk_for(int64_t T) const {
    return stream_chunk > 0 ? std::min(stream_chunk, T) : std::max<int64_t>(1, (T + 2) / 3);
  }

  // From the config's names: one for every layer, or one per layer. `segment` 0 means ceil(sqrt(n_layer)).
  // Errors (InvalidArgument, without a key) say which entry and why.
  static absl::StatusOr<ActivationPolicy> parse(const std::vector<std::string>& names, int64_t segment,
                                                int64_t n_layer);
  static ActivationPolicy keep_all() { return {}; }

  LayerPolicy at(int64_t layer) const { return layers.empty() ? LayerPolicy::kKeep : layers[layer]; }
  bool recomputes(int64_t layer) const { return at(layer) == LayerPolicy::kRecompute; }
  bool streams(int64_t layer) const { return at(layer) == LayerPolicy::kStream || stream_swaps(layer); }
  bool stream_swaps(int64_t layer) const {
    return at(layer) == LayerPolicy::kStreamSwapHost || at(layer) == LayerPolicy::kStreamSwapSsd;
  }
  // Of a stream_swap block's n chunks, the first swapped: the last ceil(fraction * n) are.
  int64_t first_swapped_chunk(int64_t n) const {
    return n - std::min(n, static_cast<int64_t>(std::ceil(stream_swap_fraction * static_cast<double>(n) - 1e-9)));
  }
  bool streams_any() const;
  bool uses_host_tier() const { return uses(LayerPolicy::kSwapHost) || uses(LayerPolicy::kStreamSwapHost); }
  bool uses_ssd_tier() const { return uses(LayerPolicy::kSwapSsd) || uses(LayerPolicy::kStreamSwapSsd); }
  bool swaps(int64_t layer) const { return at(layer) == LayerPolicy::kSwapHost || at(layer) == LayerPolicy::kSwapSsd; }
  bool uses(LayerPolicy p) const;  // some layer has policy p
  // The recompute segment [s, e) holding `layer` (a recompute layer) among the layers [first, end) a pipeline
  // stage runs: runs of consecutive recompute layers are cut into segments of `segment` from their first layer.
  std::pair<int64_t, int64_t> segment_of(int64_t layer, int64_t first, int64_t end) const;
  std::string describe() const;  // "keep", "recompute (segments of 2)", or per layer "keep x2, recompute x2"
};

}  // namespace memtrain::model
