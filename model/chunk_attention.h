// The attention core of one StreamBP chunk (model/sequence_chunk.h): the chunk's queries against the keys of
// positions [0, e) of their sequence, which are the prefix [0, s) (every key visible) and the chunk itself (the
// causal diagonal block). Keys and values are those of all B*T rows, computed before the chunks; a chunk's
// backward adds into their gradients, which are final for the chunk's own rows once every later chunk has run
// (chunks go backward from the last). A whole-sequence chunk runs the ordinary kernels (bitwise the unchunked
// attention).
//
// With context parallelism (ring cp, context_parallel.h) a rank's rows are its chunks of each sequence: the keys
// and values of the whole sequences are all-gathered first (gather_key_values), a local row's query at global
// position g sees keys [0, g], and the key/value gradients, to which every cp rank's queries add, are complete
// only after every chunk of every rank: reduce_key_value_gradients sums them into this rank's rows, and the key
// and value projections' backward runs after the chunk loop (`deferred`).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "model/context_parallel.h"
#include "model/sequence_chunk.h"

namespace memtrain::model {

// Key/value heads of every row for a streamed block: kv (B*T, 2 * Hkv*D), each row's keys then values, and their
// gradient dkv, zeroed (when asked for); width = Hkv * D.
struct StreamKeyValues {
  Tensor kv, dkv;
  int64_t width = 0;
  // Gathered over cp: local sequence i's keys start at row base[i] of kv and its position 0 is global position
  // offset[i]; empty: kv holds this rank's (B, T) rows.
  std::vector<int64_t> base, offset;
  bool deferred = false;  // the key/value projections' backward waits for reduce_key_value_gradients
  static absl::StatusOr<StreamKeyValues> create(int64_t rows, int64_t width, bool with_gradient);
  const float* k() const { return kv.f32(); }
  const float* v() const { return kv.f32() + width; }
  int64_t ld() const { return 2 * width; }
  int64_t seq_base(int64_t i, int64_t T) const { return base.empty() ? i * T : base[i]; }
  int64_t seq_offset(int64_t i) const { return offset.empty() ? 0 : offset[i]; }
};

// The keys and values of this rank's (B, T) rows (B = cp.slots * sequences) -> those of the whole sequences
// (sequences, cp.chunks() * T), gathered over cp, and a zeroed gradient of that size when the local one exists.
absl::Status gather_key_values(const ContextParallel& cp, int64_t B, int64_t T, StreamKeyValues& kv);
// Sums every cp rank's whole-sequence key/value gradient into this rank's (B, T) rows: kv.dkv becomes those rows.
absl::Status reduce_key_value_gradients(const ContextParallel& cp, int64_t B, int64_t T, StreamKeyValues& kv);
// Bytes of the communication buffer gather_key_values and reduce_key_value_gradients use: every rank's rows.
int64_t key_value_exchange_bytes(const ContextParallel& cp, int64_t rows, int64_t width);

// q, out: the chunk's rows (B*c) at strides ldq, ldo; lse (B, H, c).
absl::Status chunk_attention_forward(const float* q, int64_t ldq, const StreamKeyValues& kv, const SequenceChunk& rows,
                                     int64_t H, int64_t Hkv, int64_t D, float* out, int64_t ldo, float* lse);
// Writes dq (the chunk's rows) and adds into kv.dkv.
absl::Status chunk_attention_backward(const float* dout, int64_t lddo, const float* q, int64_t ldq,
                                      StreamKeyValues& kv, const float* out, int64_t ldo, const float* lse,
                                      const SequenceChunk& rows, int64_t H, int64_t Hkv, int64_t D, float* dq,
                                      int64_t lddq);

}  // namespace memtrain::model
