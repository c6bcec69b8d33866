// The [train], [output] and [memory] sections: the run's length and batch shape, where results go, and the
// memory budget. They know nothing of TOML; trainer/config walks `visit` to parse, override, dump and document.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/activation_policy.h"
#include "absl/strings/string_view.h"

namespace memtrain::trainer {

struct TrainConfig {
  int64_t max_steps = 1000;
  int64_t batch_size = 8;  // sequences per micro-batch
  int64_t grad_accum = 1;
  int64_t seq_len = 0;     // 0: model.block_size
  int64_t seed = 1337;
  int64_t threads = 0;     // 0: all cores
  int64_t log_interval = 10;
  int64_t eval_interval = 200;  // 0: only at the end
  int64_t eval_batches = 20;
  int64_t checkpoint_interval = 0;  // 0: none
  int64_t keep_checkpoints = 3;
  std::string checkpoint_failure = "stop";  // or "continue"
  bool checkpoint_async = false;
  std::string resume;  // "": start fresh; "auto": from output.dir's latest checkpoint

  template <class V> void visit(V& v) {
    v("max_steps", max_steps, "optimizer steps to run, > 0");
    v("batch_size", batch_size,
      "sequences per micro-batch on each data-parallel rank, > 0; a step trains on batch_size * grad_accum * parallel.dp");
    v("grad_accum", grad_accum, "micro-batches accumulated per optimizer step, > 0");
    v("seq_len", seq_len, "tokens per sequence, <= model.block_size; 0 = model.block_size");
    v("seed", seed, "seed of initialisation, data order and dropout, >= 0");
    v("threads", threads, "kernel threads, >= 0; 0 = all cores");
    v("log_interval", log_interval, "steps between metrics lines, > 0");
    v("eval_interval", eval_interval, "steps between validation runs, >= 0; 0 = only at the end");
    v("eval_batches", eval_batches, "micro-batches per validation run, > 0");
    v("checkpoint_interval", checkpoint_interval,
      "steps between checkpoints (output.dir/checkpoints/step_N.h5, and after the last step), >= 0; 0 = none");
    v("keep_checkpoints", keep_checkpoints, "checkpoints kept, the newest, > 0");
    v("checkpoint_async", checkpoint_async,
      "write checkpoints in the background: a save stalls training only to copy this rank's state to host memory "
      "(needs MPI_THREAD_MULTIPLE, which memtrain asks for when this is set)");
    v("checkpoint_failure", checkpoint_failure,
      "stop | continue: after a failed save (a full disk), stop with the error, or warn and train on; either way "
      "the previous checkpoints stay intact");
    v("resume", resume,
      "\"auto\" continues from output.dir's latest intact checkpoint (or starts fresh when there is none); \"\" "
      "starts fresh");
  }
  absl::Status validate() const;

  int64_t resolved_seq_len(int64_t block_size) const { return seq_len == 0 ? block_size : seq_len; }
};

struct OutputConfig {
  std::string dir = "runs/default";
  bool save_weights = true;
  bool tensorboard = false;
  int64_t samples = 3;
  int64_t sample_tokens = 200;
  double temperature = 0.8;
  int64_t top_k = 40;  // 0: off
  std::string prompt;

  template <class V> void visit(V& v) {
    v("dir", dir, "directory for the resolved config, metrics.jsonl, weights and samples; not empty");
    v("save_weights", save_weights, "write the final weights to dir");
    v("tensorboard", tensorboard, "also write metrics.jsonl's scalars as TensorBoard event files under dir/tensorboard");
    v("samples", samples, "text samples generated at the end, >= 0");
    v("sample_tokens", sample_tokens, "tokens per sample, >= 0");
    v("temperature", temperature, "sampling temperature, > 0");
    v("top_k", top_k, "sample from the k most likely tokens, >= 0; 0 = off");
    v("prompt", prompt, "text the samples start from; \"\" = start from nothing");
  }
  absl::Status validate() const;
};

struct MemoryConfig {
  std::string budget = "0";
  std::vector<std::string> activations = {"keep"};
  int64_t recompute_segment = 1;
  int64_t stream_chunk = 0;
  double stream_swap_fraction = 1;

  template <class V> void visit(V& v) {
    v("budget", budget, "bytes per process: an integer or with KB, MB, GB, TB, KiB, MiB, GiB, TiB (\"2GiB\"); "
                        "\"0\" = no budget");
    v("activations", activations, "how each transformer block keeps what its backward needs: keep, recompute (its "
                                  "forward runs again in backward), recompute_attention (only the attention core "
                                  "again), swap_host, swap_ssd (written out during forward, read back ahead of "
                                  "backward; offload.ssd_path), compress (projection inputs as int8 blocks: weight "
                                  "gradients within ~1e-2), stream (StreamBP: only its input kept, forward and "
                                  "backward chunk by chunk along the sequence, memory.stream_chunk), stream_swap_host, "
                                  "stream_swap_ssd (stream whose last chunks' saved tensors are swapped out and read "
                                  "back instead of recomputed, memory.stream_swap_fraction); one entry for "
                                  "every block or one per block; or [\"auto\"]: the planner picks keep, recompute "
                                  "or swap_ssd (and if need be a smaller micro-batch, the same global batch) to fit "
                                  "memory.budget");
    v("recompute_segment", recompute_segment, "consecutive recompute blocks that keep one input together and run "
                                              "their forward again as one; 0 = ceil(sqrt(model.n_layer))");
    v("stream_chunk", stream_chunk, "positions per chunk of a stream block's forward and backward (StreamBP): it "
                                    "holds its input, output, keys and values for the whole sequence and the rest "
                                    "for one chunk; 0 = a third of the sequence");
    v("stream_swap_fraction", stream_swap_fraction, "of a stream_swap_host/ssd block's chunks, the fraction (the "
                                                    "last ones: their forward costs most to run again) whose saved "
                                                    "tensors are swapped instead of recomputed; 0 to 1");
  }
  absl::Status validate() const;
  // The blocks' policy for a model of n_layer blocks; errors name memory.activations.
  absl::StatusOr<model::ActivationPolicy> activation_policy(int64_t n_layer) const;

  // The budget in bytes, 0 for none. Only meaningful after validate() succeeded (returns 0 for a bad string).
  int64_t budget_bytes() const;
};

struct OffloadConfig {
  std::string ssd_path;
  std::string optimizer = "none";
  std::string parameters = "none";

  template <class V> void visit(V& v) {
    v("ssd_path", ssd_path, "directory for the swap file of memory.activations = swap_ssd and offload.optimizer = "
                            "\"ssd\" (one per rank, 0600, unlinked once open so no exit leaves it behind); O_DIRECT "
                            "where the file system allows");
    v("optimizer", optimizer, "none | ssd: AdamW's moments on disk under offload.ssd_path, streamed through memory "
                              "a group of 1M elements at a time, overlapped with the update (ZeRO-Infinity); the "
                              "same updates bit for bit");
    v("parameters", parameters, "none | host | ssd: ZeRO-3's parameter shard kept in host buffers (category swap) or "
                                "on disk under offload.ssd_path between uses; each layer's slice is read back ahead "
                                "of its all-gather and its update, so a few layers' slices are in memory at a time "
                                "(zero.stage = 3, optim.name adamw or adamw8bit)");
  }
  absl::Status validate() const;
  bool optimizer_on_ssd() const { return optimizer == "ssd"; }
  bool parameters_offloaded() const { return parameters != "none"; }
  bool uses_ssd() const { return optimizer_on_ssd() || parameters == "ssd"; }
};

struct SnapshotConfig {
  int64_t interval = 0;
  int64_t k = 4;
  int64_t m = 1;
  int64_t ranks_per_node = 0;
  std::string job;
  bool keep_at_exit = false;
  bool async = true;
  bool keeper = true;
  int64_t keeper_timeout_s = 600;

  template <class V> void visit(V& v) {
    v("interval", interval, "steps between in-memory snapshots (0: none): every rank's state copied into POSIX "
                            "shared memory, two versions kept, protected by Reed-Solomon parity held by other ranks; "
                            "a restart with train.resume = \"auto\" continues from the newest complete one when it is "
                            "newer than the last checkpoint, rebuilding up to snapshot.m lost ranks per group");
    v("k", k, "ranks per erasure-coding group (with m > 0 at most the number of ranks - 1: larger values are "
              "lowered to it)");
    v("m", m, "parity shards per group, held by ranks outside it (on other nodes where possible): any m lost ranks "
              "are rebuilt");
    v("ranks_per_node", ranks_per_node, "0: a rank's node is its host name; n > 0: ranks 0..n-1 count as node 0, "
                                        "and so on (to try node-aware placement on one machine)");
    v("job", job, "names this job's shared-memory objects (/dev/shm/memtrain.JOB.*); \"\": derived from output.dir, so "
                  "a restart of the same run finds them");
    v("keep_at_exit", keep_at_exit, "leave the snapshots in shared memory when training ends (a later run of the "
                                    "same job resumes from them); false: the run removes them at its end");
    v("async", async, "true: the parity is computed in a background thread while training goes on (the step "
                      "only waits for the copy into shared memory; needs MPI_THREAD_MULTIPLE, which memtrain train "
                      "asks for); false: within the step");
    v("keeper", keeper, "true: the snapshots are held by a keeper process per node (`memtrain keeper`, started by "
                        "the node's first rank when none runs, socket /dev/shm/memtrain.JOB.NODE.keeper), so memory "
                        "is freed when the job is over and never leaks; false: named objects in /dev/shm, which stay "
                        "until a run of the job removes them");
    v("keeper_timeout_s", keeper_timeout_s, "seconds a keeper keeps a job's snapshots with no rank connected (the "
                                            "time a restart has to come back), then it frees them and exits");
  }
  absl::Status validate() const;
};

// "123", "2GiB", "1.5 GB", "512kib" -> bytes. Decimal suffixes (KB, MB, GB, TB) are powers of 1000, binary ones
// (KiB, MiB, GiB, TiB) powers of 1024; suffixes ignore case; a trailing "B" alone means bytes. A fraction is allowed
// only with a suffix and is rounded down to whole bytes. Errors (InvalidArgument, without a key) say why.
absl::StatusOr<int64_t> parse_bytes(absl::string_view text);

}  // namespace memtrain::trainer
