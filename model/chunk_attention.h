// The attention core of one StreamBP chunk (model/sequence_chunk.h): the chunk's queries against the keys of
// positions [0, e) of their sequence, which are the prefix [0, s) (every key visible) and the chunk itself (the
// causal diagonal block). Keys and values are those of all B*T rows, computed before the chunks; a chunk's
// backward adds into their gradients, which are final for the chunk's own rows once every later chunk has run
// (chunks go backward from the last). A whole-sequence chunk runs the ordinary kernels (bitwise the unchunked
// attention).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "model/context_parallel.h"
#include "model/sequence_chunk.h"

namespace memtrain::model {

// Key/value heads of every row for a streamed block: kv (B*T, 2 * Hkv*D), each row's keys then values, and their
// gradient dkv, zeroed (when asked for); width = Hkv * D.
struct StreamKeyValues {
  Tensor kv, dkv;
  int64_t width = 0;
  static absl::StatusOr<StreamKeyValues> create(int64_t rows, int64_t width, bool with_gradient);
  const float* k() const { return kv.f32(); }
  const float* v() const { return kv.f32() + width; }
  int64_t ld() const { return 2 * width; }
};

// q, out: the chunk's rows (B*c) at strides ldq, ldo; lse (B, H, c).
absl::Status chunk_attention_forward(const float* q, int64_t ldq, const StreamKeyValues& kv, const SequenceChunk& rows,
                                     int64_t H, int64_t Hkv, int64_t D, float* out, int64_t ldo, float* lse);
// Writes dq (the chunk's rows) and adds into kv.dkv.
absl::Status chunk_attention_backward(const float* dout, int64_t lddo, const float* q, int64_t ldq,
                                      StreamKeyValues& kv, const float* out, int64_t ldo, const float* lse,
                                      const SequenceChunk& rows, int64_t H, int64_t Hkv, int64_t D, float* dq,
                                      int64_t lddq);

}  // namespace memtrain::model
