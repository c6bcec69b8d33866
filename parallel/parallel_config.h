// The [parallel] section: the mesh shape, the collective deadline and the gradient bucket size. It knows nothing
// of TOML; trainer/config walks `visit` to parse, override, dump and document it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace memtrain::parallel {

struct ParallelConfig {
  int64_t dp = -1;  // -1: whatever the world size leaves after tp * pp * cp
  int64_t tp = 1;
  int64_t pp = 1;
  int64_t cp = 1;
  int64_t cp_a2a = 1;   // unified SP: the all-to-all (Ulysses) part of cp
  int64_t cp_ring = -1;  // -1: cp / cp_a2a
  double timeout_s = 300;
  double bucket_mb = 25;
  bool sequence_parallel = false;
  std::string pp_schedule = "1f1b";
  int64_t pp_chunks = 1;
  std::vector<int64_t> pp_layers;  // empty: an even split

  template <class V> void visit(V& v) {
    v("dp", dp, "data-parallel ranks, >= 1, or -1 = the world size / (tp * pp * cp)");
    v("tp", tp, "tensor-parallel ranks, >= 1 (innermost: neighbouring ranks); divides the heads and the MLP width");
    v("pp", pp, "pipeline stages, >= 1 (outermost): rank r of pp holds layers [r L/pp, (r+1) L/pp) (pp divides "
      "model.n_layer) or the share parallel.pp_layers gives it; train.grad_accum micro-batches flow through the "
      "stages per step");
    v("pp_schedule", pp_schedule,
      "with pp > 1: \"gpipe\" (all forwards, then all backwards) or \"1f1b\" (one forward, one backward: at most "
      "pp - r micro-batches in flight on rank r) or \"interleaved\" (1F1B over parallel.pp_chunks stages per rank, "
      "Megatron's virtual pipeline: a smaller bubble; train.grad_accum a multiple of pp) or \"zb-h1\" (zero bubble: "
      "weight gradients deferred to fill the bubbles; up to pp micro-batches in flight on every rank)");
    v("pp_chunks", pp_chunks,
      "model chunks (stages) per pp rank, >= 1; > 1 only with pp_schedule = \"interleaved\" (which needs >= 2): "
      "chunk c of rank r is stage c * pp + r of pp * pp_chunks");
    v("pp_layers", pp_layers,
      "with pp > 1: the layers of each stage, in stage order (pp * pp_chunks entries, stage c * pp + r being chunk "
      "c of rank r) summing to model.n_layer; the first and last stage may hold none (only the embeddings, or the "
      "final norm and head), the others at least one; [] = an even split");
    v("cp", cp,
      "context-parallel ranks, >= 1 (between tp and dp): each holds 2 of the 2 * cp chunks of every sequence (one "
      "early, one late) and attention passes key/value blocks around a ring; 2 * cp divides the sequence length");
    v("cp_a2a", cp_a2a,
      "unified sequence parallelism: the cp ranks form groups of cp_a2a consecutive ranks that exchange attention "
      "heads by all-to-all (Ulysses) around a ring of cp / cp_a2a ranks; each rank holds 1/cp_a2a of its ring "
      "chunks' tokens; divides cp and this rank's attention heads (n_head / tp), and the key/value heads divide "
      "it or it them; 1 = ring only");
    v("cp_ring", cp_ring, "the ring part of cp: cp / cp_a2a, or -1 = the rest");
    v("sequence_parallel", sequence_parallel,
      "with tp > 1: the norms and residual stream hold 1/tp of the tokens; all-reduces become reduce-scatter + "
      "all-gather (tp divides the sequence length)");
    v("timeout_s", timeout_s, "a collective not done after this many seconds fails naming the missing ranks, > 0");
    v("bucket_mb", bucket_mb,
      "data parallel: gradients of whole layers are all-reduced in buckets of at least this many MiB, each as soon "
      "as backward has finished it, > 0");
  }
  // Range checks only; whether dp * tp * pp * cp matches the world size is DeviceMesh::create's job.
  absl::Status validate() const;
};

}  // namespace memtrain::parallel
