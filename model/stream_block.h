// StreamBP (memory.activations = "stream"; Luo et al., arXiv 2506.03077): a pre-norm block (block.h) run chunk by
// chunk along the sequence, forward and backward, so that besides its input, output, keys and values (all rows)
// it holds one chunk's worth. The block keeps only its input through forward, as a recompute segment of one
// block does.
//
// Both directions first make the keys and values of every row (norm1 and the key/value projections, chunk by
// chunk, keeping nothing). Forward then runs each chunk's attention (its queries against the prefix and itself,
// chunk_attention.h), the residuals, norm2 and the MLP, keeping nothing. Backward runs the chunks from the last:
// each chunk's forward again, keeping what its backward needs, then its backward, whose key/value gradients add
// into the block's; a chunk's own key/value gradients are complete once the chunks after it have run, and its
// key/value projections' backward runs then. Results are the unchunked block's up to the order of sums (the
// attention's online softmax over two key blocks; dW = sum over chunks of dy^T x); one chunk (chunk >= T) runs
// the unchunked operations, bit for bit `recompute`.
//
// With context parallelism (a ring, chunk_attention.h) the chunks are positions of this rank's local rows, the
// keys and values are gathered over cp into whole sequences, and after the chunk loop the key/value gradients are
// summed over cp and each chunk's key/value projections run backward (norm1 again on its rows).
//
// Token-wise swap (stream_swap_host/ssd, ChunkSwap): the chunks from `first` on save what their backward needs
// during the first forward, as their own swapped units of the store (activation_store.h), and their backward reads
// it back (the next swapped chunk's read issued ahead) instead of running the chunk's forward again: the same bits.
#pragma once

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/cpu/elementwise.h"
#include "model/activation_store.h"
#include "model/chunk_attention.h"
#include "model/sequence_chunk.h"

namespace memtrain::model {

// Which of a stream block's chunks are swapped (token-wise swap): those from `first` on, to `tier`; none when
// tier is null.
struct ChunkSwap {
  SwapTier* tier = nullptr;
  int64_t layer = -1, first = 0;
  bool swaps(int64_t chunk) const { return tier != nullptr && chunk >= first; }
  int64_t unit(int64_t chunk) const { return ActivationStore::chunk_unit(layer, chunk); }
  static std::string suffix(int64_t chunk) { return absl::StrCat("#chunk", chunk); }
};

namespace stream_detail {

inline SequenceChunk chunk_rows(int64_t B, int64_t T, int64_t chunk, int64_t i) {
  return {B, T, i * chunk, std::min(T, (i + 1) * chunk)};
}

// The keys and values of every row of x (B*T, C), and a zeroed gradient for them when `with_gradient`.
template <class Block>
absl::StatusOr<StreamKeyValues> key_values(const Block& block, const Tensor& x, int64_t B, int64_t T, int64_t chunk,
                                           bool with_gradient, const ActivationStore& store) {
  MEMTRAIN_ASSIGN_OR_RETURN(StreamKeyValues kv, StreamKeyValues::create(B * T, block.attn.kv_width(), with_gradient));
  ActivationStore passing(/*keep=*/false);  // norm1 keeps nothing here
  for (int64_t i = 0; i * chunk < T; ++i) {
    const SequenceChunk rows = chunk_rows(B, T, chunk, i);
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor xc, rows.gather(x));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor y1, block.norm1.forward(xc, passing));
    MEMTRAIN_RETURN_IF_ERROR(block.attn.stream_key_values(y1, rows, kv, store));
  }
  const ContextParallel& cp = block.attn.context_parallel();
  if (cp.group_size() > 1) MEMTRAIN_RETURN_IF_ERROR(gather_key_values(cp, B, T, kv));
  return kv;
}

// With cp, after the chunk loop: the key/value gradients summed over cp, then each chunk's key/value projections'
// backward (norm1 again on its rows) added into dx.
template <class Block>
absl::Status deferred_key_value_backward(Block& block, const Tensor& x, int64_t B, int64_t T, int64_t chunk,
                                         StreamKeyValues& kv, Tensor& dx, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  MEMTRAIN_RETURN_IF_ERROR(reduce_key_value_gradients(block.attn.context_parallel(), B, T, kv));
  for (int64_t i = (T + chunk - 1) / chunk; i-- > 0;) {
    const SequenceChunk rows = chunk_rows(B, T, chunk, i);
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor xc, rows.gather(x));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor y1, block.norm1.forward(xc, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dy1, block.attn.stream_key_value_backward(y1, rows, kv, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dxc, block.norm1.backward(dy1, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor part, rows.gather(dx));
    cpu::add_inplace(part.f32(), dxc.f32(), dxc.numel(), pool);
    rows.to_full(part.f32(), part.cols(), dx.f32(), dx.cols(), dx.cols());
  }
  return absl::OkStatus();
}

// The block's output on one chunk's rows xc; saves what the chunk's backward needs when the store keeps.
template <class Block>
absl::StatusOr<Tensor> chunk_forward(const Block& block, const Tensor& xc, const SequenceChunk& rows,
                                     const StreamKeyValues& kv, ActivationStore& store) {
  ThreadPool& pool = ThreadPool::global();
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor y1, block.norm1.forward(xc, store));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x2, block.attn.stream_forward(y1, rows, kv, store));
  cpu::add_inplace(x2.f32(), xc.f32(), xc.numel(), pool);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor y2, block.norm2.forward(x2, store));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor x3, block.mlp.forward(y2, store));
  cpu::add_inplace(x3.f32(), x2.f32(), xc.numel(), pool);
  return x3;
}

}  // namespace stream_detail

// The block's output for x (B*T, C), chunk positions at a time, into a store that keeps nothing of it but the
// swapped chunks' tensors (when it keeps).
template <class Block>
absl::StatusOr<Tensor> stream_block_forward(const Block& block, const Tensor& x, int64_t B, int64_t T, int64_t chunk,
                                            const ChunkSwap& swap, ActivationStore& store) {
  using namespace stream_detail;
  MEMTRAIN_ASSIGN_OR_RETURN(StreamKeyValues kv, key_values(block, x, B, T, chunk, false, store));
  const auto run = [&](const Tensor& xc, int64_t i) -> absl::StatusOr<Tensor> {
    const SequenceChunk rows = chunk_rows(B, T, chunk, i);
    if (!swap.swaps(i) || !store.keeping()) return chunk_forward(block, xc, rows, kv, store);
    store.begin_chunk(swap.unit(i), swap.tier, ChunkSwap::suffix(i));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor yc, chunk_forward(block, xc, rows, kv, store));
    MEMTRAIN_RETURN_IF_ERROR(store.end_chunk());
    return yc;
  };
  if (chunk >= T) return run(x, 0);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor y, Tensor::empty_like(x, MemCategory::kActivations));
  for (int64_t i = 0; i * chunk < T; ++i) {
    const SequenceChunk rows = chunk_rows(B, T, chunk, i);
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor xc, rows.gather(x));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor yc, run(xc, i));
    rows.to_full(yc.f32(), yc.cols(), y.f32(), y.cols(), y.cols());
  }
  return y;
}

// dL/dx from the block's input x and dy = dL/d(output).
template <class Block>
absl::StatusOr<Tensor> stream_block_backward(Block& block, const Tensor& x, const Tensor& dy, int64_t B, int64_t T,
                                             int64_t chunk, const ChunkSwap& swap, ActivationStore& store) {
  using namespace stream_detail;
  ThreadPool& pool = ThreadPool::global();
  MEMTRAIN_ASSIGN_OR_RETURN(StreamKeyValues kv, key_values(block, x, B, T, chunk, true, store));
  Tensor dx;
  if (chunk < T || kv.deferred) {
    MEMTRAIN_ASSIGN_OR_RETURN(dx, Tensor::empty_like(x, MemCategory::kActivations));
  }
  for (int64_t i = (T + chunk - 1) / chunk; i-- > 0;) {
    const SequenceChunk rows = chunk_rows(B, T, chunk, i);
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dyc, rows.gather(dy));
    if (swap.swaps(i)) {  // back from the tier (read ahead by the chunk after it), the next swapped one on its way
      store.set_key_suffix(ChunkSwap::suffix(i));
      MEMTRAIN_RETURN_IF_ERROR(store.fetch_block(swap.unit(i), swap.swaps(i - 1) ? swap.unit(i - 1) : -1));
    } else {
      MEMTRAIN_ASSIGN_OR_RETURN(Tensor xc, rows.gather(x));
      MEMTRAIN_RETURN_IF_ERROR(chunk_forward(block, xc, rows, kv, store).status());
    }
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dy2, block.mlp.backward(dyc, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dx2, block.norm2.backward(dy2, store));
    cpu::add_inplace(dx2.f32(), dyc.f32(), dyc.numel(), pool);  // the residual branch
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dy1, block.attn.stream_backward(dx2, rows, kv, store));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor dxc, block.norm1.backward(dy1, store));
    store.set_key_suffix("");
    cpu::add_inplace(dxc.f32(), dx2.f32(), dyc.numel(), pool);
    if (rows.whole() && !kv.deferred) return dxc;
    rows.to_full(dxc.f32(), dxc.cols(), dx.f32(), dx.cols(), dx.cols());
  }
  if (kv.deferred) MEMTRAIN_RETURN_IF_ERROR(deferred_key_value_backward(block, x, B, T, chunk, kv, dx, store));
  return dx;
}

// The high-water marks, for chunks of c positions, besides the incoming dy. Forward: in a chunk's MLP, the block's
// input and (with more than one chunk) output, the keys and values, and what a forward that keeps nothing holds on
// the chunk's rows (Block::forward_only_peak_bytes, which counts the chunk's input). Backward: in a chunk's MLP
// backward, the block's input, the keys and values and their gradient, dx and the chunk's rows of x and dy (with
// more than one chunk), what the chunk's forward saved (the attention's own, the keys and values being the
// block's) and the MLP backward's scratch. With cp the keys and values (and their gradient) are the whole
// sequences' (cp.size times this rank's rows), and dx exists also for one chunk.
// What the forward of a chunk of c positions saves (the keys and values being the block's): a swapped chunk's bytes.
template <class Block>
int64_t stream_chunk_saved_bytes(const ModelConfig& cfg, int64_t B, int64_t c, const TensorParallel& tp) {
  using Attention = typename Block::AttentionLayer;
  return Block::saved_bytes(cfg, B, c, tp) - Attention::saved_bytes(cfg, B, c, tp.size) +
         Attention::stream_saved_bytes(cfg, B, c, tp.size);
}
template <class Block>
int64_t stream_forward_peak_bytes(const ModelConfig& cfg, int64_t B, int64_t T, int64_t c, const TensorParallel& tp,
                                  const ContextParallel& cp) {
  const int64_t N = B * T, C = cfg.n_embd;
  const int64_t chunked = c < T ? 4 * 2 * N * C : 0;
  return chunked + Block::AttentionLayer::stream_key_value_bytes(cfg, N * cp.size, tp.size) +
         Block::forward_only_peak_bytes(cfg, B, std::min(c, T), tp);
}
template <class Block>
int64_t stream_backward_peak_bytes(const ModelConfig& cfg, int64_t B, int64_t T, int64_t c, const TensorParallel& tp,
                                   const ContextParallel& cp) {
  using Attention = typename Block::AttentionLayer;
  const int64_t N = B * T, rows = B * std::min(c, T), C = cfg.n_embd;
  const int64_t chunked = c < T ? 4 * (N + 2 * rows) * C : cp.size > 1 ? 4 * N * C : 0;
  const int64_t chunk_saved = stream_chunk_saved_bytes<Block>(cfg, B, std::min(c, T), tp) - 4 * rows * C;
  return 4 * N * C + 2 * Attention::stream_key_value_bytes(cfg, N * cp.size, tp.size) + chunked + chunk_saved +
         Block::MlpLayer::backward_scratch_bytes(cfg, rows, tp.size);
}

}  // namespace memtrain::model
