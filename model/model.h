// The model interface the trainer drives: a body (embeddings and blocks, per architecture) followed by the shared
// fused head + loss. forward/backward are flat lists of layer calls; every activation goes through the store.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "model/activation_policy.h"
#include "model/activation_store.h"
#include "model/context_parallel.h"
#include "model/lm_head.h"
#include "model/model_config.h"
#include "model/params.h"
#include "model/stream_block.h"
#include "model/tensor_parallel.h"
#include "parallel/unit_hooks.h"

namespace memtrain::model {

// Which layers a model holds: a pipeline stage holds blocks [first_layer, end_layer), the embeddings if it is the
// first stage and the final norm and head if it is the last. The default is the whole model.
struct PipelineStage {
  int64_t first_layer = 0, end_layer = -1;  // -1: through the last layer
  bool first = true, last = true;
  static PipelineStage whole() { return {}; }
};

// The global block (layer) index in a parameter's Hugging Face name ("transformer.h.3.mlp.c_fc.weight",
// "model.layers.3.self_attn.q_proj.weight"), or -1 outside the blocks (embeddings, final norm, head).
int64_t block_layer_of(absl::string_view name);

class Model {
 public:
  virtual ~Model() = default;

  // Registers the architecture's parameters in `params` (which must outlive the model); allocate and initialise
  // them with params.allocate() and params.initialize(seed). With tp.size > 1 the parameters are this tp rank's
  // parts (TpSplit) and forward/backward communicate over tp.comm; every tp rank feeds the same tokens and gets
  // the same loss. Errors when tp does not divide the heads, the MLP width or the vocabulary. With cp.size > 1
  // the model runs this cp rank's chunks of each sequence (context_parallel.h) and attention rings over cp.comm.
  // With a pipeline stage, only that stage's parameters are registered (a GPT-2 last stage registers the tied
  // token embedding again, as its head) and forward_stage/backward_stage run it. Several stages may register into
  // one ParamSet (an interleaved pipeline's chunks on one rank): each starts a new unit.
  static absl::StatusOr<std::unique_ptr<Model>> create(const ModelConfig& cfg, ParamSet& params,
                                                       const TensorParallel& tp = {},
                                                       const ContextParallel& cp = {},
                                                       const PipelineStage& stage = {});
  // Why `tp` ranks cannot split `cfg` (an empty string when they can).
  static std::string tensor_parallel_mismatch(const ModelConfig& cfg, int tp);

  // tokens, targets: (B, T) int32. Returns the sum of token losses. When store.keeping(), the backward state is
  // saved and dL/d(params) with L = grad_scale * sum(losses) is ready after backward() (the head adds its part
  // during forward). With cp, every cp rank is given the whole sequences and runs its chunks: the loss and the
  // gradients are this rank's part, which the caller sums over cp.
  absl::StatusOr<double> forward(const Tensor& tokens, const Tensor& targets, float grad_scale, ActivationStore& store);
  absl::Status backward(ActivationStore& store);

  // A pipeline stage's forward: every stage is given the micro-batch's tokens and targets (B, T) as forward is;
  // the first embeds the tokens, the others start from x, the previous stage's output. Returns this stage's output
  // for the next stage; the last stage returns an empty tensor and sets *loss (as forward's result).
  absl::StatusOr<Tensor> forward_stage(const Tensor& tokens, const Tensor& targets, const Tensor& x, float grad_scale,
                                       ActivationStore& store, double* loss);
  // dy: dL/d(this stage's output) from the next stage (unused on the last stage). Returns dL/dx for the previous
  // stage; an empty tensor on the first.
  absl::StatusOr<Tensor> backward_stage(const Tensor& dy, ActivationStore& store);
  const PipelineStage& stage() const { return stage_; }
  // Logits (B, V) of each sequence's last position; keeps nothing. Collective over tp.
  absl::StatusOr<Tensor> last_logits(const Tensor& tokens);

  // Activation bytes that forward(B, T) leaves in a keeping store on this rank, from the shapes alone. (B, T) is
  // always the batch of whole sequences fed to forward, also with cp.
  int64_t predicted_activation_bytes(int64_t B, int64_t T) const;
  // The activation high-water mark of a forward + backward at (B, T), besides the caller's batch tensors: what
  // forward saves, plus the scratch of the last block's MLP backward, minus the final norm's statistics freed just
  // before it. (The head's dL/dh stays alive through backward.) Workspace: one chunk of logits.
  int64_t predicted_peak_activation_bytes(int64_t B, int64_t T) const;
  // What a backward into a store that defers weight gradients (a zero-bubble pipeline) leaves behind until
  // run_weight_grads: the blocks' projections' inputs and output gradients.
  int64_t predicted_deferred_bytes(int64_t B, int64_t T) const;
  // The activation high-water mark of a forward + such a backward: in the last block backward reaches (the others'
  // saved tensors replaced by their deferred ones by then), in its MLP or its attention.
  int64_t predicted_deferring_peak_activation_bytes(int64_t B, int64_t T) const;
  int64_t predicted_workspace_bytes(int64_t B, int64_t T) const;
  // The activation high-water mark of a forward into a store that keeps nothing (evaluation, zo_sgd): one block's
  // (Block::forward_only_peak_bytes, or a stream block's chunked forward), besides the caller's batch tensors.
  int64_t predicted_forward_only_peak_bytes(int64_t B, int64_t T) const;
  // What one micro-batch's forward sends to the tier of `policy` (swap_host or swap_ssd): the saved bytes of the
  // blocks with that policy.
  int64_t predicted_swapped_bytes(int64_t B, int64_t T, LayerPolicy policy) const;
  // Ring attention's buffers (category communication) at their high-water mark, in backward; 0 without cp.
  int64_t predicted_communication_bytes(int64_t B, int64_t T) const;
  // Training FLOPs per token at context T: 6 * (matmul parameters) + 12 * L * C * T for attention (PaLM's count).
  double flops_per_token(int64_t T) const;
  const ModelConfig& config() const { return cfg_; }
  const ContextParallel& context_parallel() const { return cp_; }
  // The activation a pipeline stage hands on for a (B, T) batch: this rank's rows (after cp and SP) x C.
  Shape activation_shape(int64_t B, int64_t T) const {
    const auto [b, t] = local_batch(B, T);
    return {tp_.local_rows(b * t), cfg_.n_embd};
  }

  // Parameter units (ParamSet::begin_unit): 0 = embeddings, 1..n_layer = the blocks, n_layer + 1 = the final norm
  // and an untied head. A tied head uses unit 0 again.
  // On a pipeline stage: the embeddings if first, its blocks, the final unit if last.
  int num_units() const { return (stage_.first ? 1 : 0) + num_blocks() + (stage_.last ? 1 : 0); }
  int num_blocks() const { return static_cast<int>(stage_.end_layer - stage_.first_layer); }
  // How each block keeps its activations (memory.activations); keep everywhere unless set.
  void set_activation_policy(ActivationPolicy policy) { policy_ = std::move(policy); }
  // Where swap_host and swap_ssd blocks go (offload/); required when the policy names them. Not owned.
  void set_swap_tiers(SwapTier* host, SwapTier* ssd) {
    host_tier_ = host;
    ssd_tier_ = ssd;
  }
  const ActivationPolicy& activation_policy() const { return policy_; }

  // The engine told about every use of a unit (see parallel/unit_hooks.h); nullptr = none. Not owned.
  void set_unit_hooks(parallel::UnitHooks* hooks) { hooks_ = hooks; }

 protected:
  Model(const ModelConfig& cfg, ParamSet& params, const TensorParallel& tp, const ContextParallel& cp,
        const PipelineStage& stage);
  // The batch this rank's layers see for (B, T) whole sequences: (cp.slots * B, T / cp.pieces()).
  std::pair<int64_t, int64_t> local_batch(int64_t B, int64_t T) const { return {cp_.slots * B, T / cp_.pieces()}; }
  // tokens (B, T) this rank's chunks (all of it without cp); x the previous stage's output. Checked tokens.
  absl::StatusOr<Tensor> forward_local(const Tensor& tokens, const Tensor& targets, const Tensor& x, float grad_scale,
                                       ActivationStore& store, double* loss);
  // The stage without the head: tokens (B, T) (embedded on the first stage) or x -> the stage's output, the final
  // normalised hidden states (B*T, C) on the last stage. backward returns dL/dx (empty on the first stage).
  virtual absl::StatusOr<Tensor> body_forward(const Tensor& tokens, const Tensor& x, ActivationStore& store) = 0;
  virtual absl::StatusOr<Tensor> body_backward(const Tensor& dh, ActivationStore& store) = 0;
  virtual int64_t body_saved_bytes(int64_t B, int64_t T) const = 0;
  // One block's activation figures (PreNormBlock's static functions) for this rank's (B, T).
  struct BlockBytes {
    int64_t saved, deferred, deferring_attention_peak, deferring_mlp_extra, forward_only_peak;
    int64_t mlp_backward_scratch, stream_forward_peak, stream_backward_peak;  // stream: for the policy's chunk
    // stream_swap: what one (whole) chunk's forward saves, what a block's swapped chunks save together, and what
    // its last two do (the most two swapped chunks hold in forward: one saving, the one before it being written).
    int64_t stream_chunk_saved, stream_swapped, stream_last_two_swapped;
  };
  virtual BlockBytes block_bytes(int64_t B, int64_t T) const = 0;
  template <class Block>
  BlockBytes block_bytes_of(int64_t B, int64_t T) const {
    const int64_t c = policy_.stream_chunk_for(T), chunks = (T + c - 1) / c;
    int64_t swapped = 0, last_two = 0;
    for (int64_t i = policy_.first_swapped_chunk(chunks); i < chunks; ++i) {
      const int64_t bytes = stream_chunk_saved_bytes<Block>(cfg_, B, std::min(c, T - i * c), tp_);
      swapped += bytes;
      last_two += i >= chunks - 2 ? bytes : 0;
    }
    return {Block::saved_bytes(cfg_, B, T, tp_), Block::deferred_bytes(cfg_, B, T, tp_),
            Block::deferring_attention_peak_bytes(cfg_, B, T, tp_), Block::deferring_mlp_extra_bytes(cfg_, B, T, tp_),
            Block::forward_only_peak_bytes(cfg_, B, T, tp_),
            Block::MlpLayer::backward_scratch_bytes(cfg_, B * T, tp_.size),
            stream_forward_peak_bytes<Block>(cfg_, B, T, c, tp_, cp_),
            stream_backward_peak_bytes<Block>(cfg_, B, T, c, tp_, cp_),
            stream_chunk_saved_bytes<Block>(cfg_, B, std::min(c, T), tp_),
            swapped, last_two};
  }
  // With cp, the first stage saves a copy of the tokens of this rank's chunks for the embeddings' backward.
  int64_t chunk_tokens_bytes(int64_t b, int64_t t) const { return cp_.group_size() > 1 && stage_.first ? 4 * b * t : 0; }
  // What blocks [0, end) of this stage keep through forward: saved tensors, or a recompute segment's input.
  int64_t blocks_stored_bytes(size_t end, int64_t b, int64_t t) const;
  // What blocks [0, l] hold when block l's backward runs: the stored bytes below, and its own saved tensors (with
  // those of the blocks of its recompute segment below it, recomputed).
  int64_t blocks_held_bytes(size_t l, int64_t b, int64_t t) const;
  // The high-water mark's excess over what forward leaves: the MLP backward's scratch.
  virtual int64_t backward_peak_extra_bytes(int64_t B, int64_t T) const = 0;
  // What the last block's MLP backward holds besides its scratch under SP: dy and the input gathered to all N
  // rows, and dx reduce-scattered to this rank's rows.
  int64_t sequence_parallel_mlp_extra_bytes(int64_t N) const {
    return tp_.sequence_parallel ? 4 * (2 * N + tp_.local_rows(N)) * cfg_.n_embd : 0;
  }
  // Workspace the body's own backward holds at its high-water mark, when that can exceed the head's logits chunk.
  virtual int64_t body_workspace_bytes(int64_t B, int64_t T) const { return 0; }
  // Parameters only looked up, never multiplied (excluded from the 6N FLOP count); a tied token embedding is
  // also the head's weight, so it counts as multiplied.
  virtual int64_t embedding_params() const = 0;

  absl::Status check_tokens(const Tensor& tokens) const;  // ids in [0, V), T <= block_size
  // The hooks' calls, or nothing without hooks.
  absl::Status acquire(int unit, parallel::UnitUse use) { return hooks_ ? hooks_->acquire(unit, use) : absl::OkStatus(); }
  absl::Status release(int unit, parallel::UnitUse use) { return hooks_ ? hooks_->release(unit, use) : absl::OkStatus(); }
  absl::Status grads_ready(int unit) { return hooks_ ? hooks_->grads_ready(unit) : absl::OkStatus(); }
  int block_unit(size_t l) const { return unit_base_ + (stage_.first ? 1 : 0) + static_cast<int>(l); }
  // This stage's block l under the activation policy: whether it is recomputed, and its segment [s, e) in the
  // stage's block indices.
  int64_t global_layer(size_t l) const { return stage_.first_layer + static_cast<int64_t>(l); }
  bool recomputes(size_t l) const { return policy_.recomputes(global_layer(l)); }
  std::pair<size_t, size_t> segment_of(size_t l) const {
    const auto [s, e] = policy_.segment_of(global_layer(l), stage_.first_layer, stage_.end_layer);
    return {static_cast<size_t>(s - stage_.first_layer), static_cast<size_t>(e - stage_.first_layer)};
  }
  std::string segment_input_key(size_t l) const { return absl::StrCat("block.", global_layer(l), "/input"); }
  bool streams(size_t l) const { return policy_.streams(global_layer(l)); }
  bool swaps(size_t l) const { return policy_.swaps(global_layer(l)); }
  bool compresses(size_t l) const { return policy_.at(global_layer(l)) == LayerPolicy::kCompress; }
  bool recomputes_attention(size_t l) const {
    return policy_.at(global_layer(l)) == LayerPolicy::kRecomputeAttention;
  }
  // What block l keeps through forward besides recompute segments' inputs (saved bytes less what compress or
  // recompute_attention leaves out; 0 when swapped), and what it holds itself when its MLP backward runs.
  int64_t block_stored_bytes(size_t l, int64_t b, int64_t t) const;
  int64_t block_own_bytes(size_t l, int64_t b, int64_t t) const;
  // What compress saves on one of a block's two projection inputs (rows, C): 4 bytes a value less its code and scale.
  int64_t compress_saving(int64_t b, int64_t t) const {
    const int64_t n = tp_.local_rows(b * t) * cfg_.n_embd;
    return 4 * n - ActivationStore::compressed_bytes(n);
  }
  // The tier block l's saved tensors go to; null when it keeps them.
  SwapTier* swap_tier(size_t l) const {
    if (!swaps(l)) return nullptr;
    SwapTier* tier = policy_.at(global_layer(l)) == LayerPolicy::kSwapHost ? host_tier_ : ssd_tier_;
    MEMTRAIN_CHECK_MSG(tier != nullptr, "a swap policy without its tier (Model::set_swap_tiers)");
    return tier;
  }
  // A stream_swap block's swapped chunks on sequences of T positions (none for other blocks).
  ChunkSwap chunk_swap(size_t l, int64_t T) const {
    const int64_t layer = global_layer(l);
    if (!policy_.stream_swaps(layer)) return {};
    SwapTier* tier = policy_.at(layer) == LayerPolicy::kStreamSwapHost ? host_tier_ : ssd_tier_;
    MEMTRAIN_CHECK_MSG(tier != nullptr, "a swap policy without its tier (Model::set_swap_tiers)");
    const int64_t chunk = policy_.stream_chunk_for(T);
    return {tier, layer, policy_.first_swapped_chunk((T + chunk - 1) / chunk)};
  }
  int64_t swapped_chunks(int64_t T) const {
    const int64_t chunk = policy_.stream_chunk_for(T), n = (T + chunk - 1) / chunk;
    return n - policy_.first_swapped_chunk(n);
  }
  int final_unit() const { return block_unit(num_blocks()); }
  // What both architectures run after their embeddings: the stage's blocks and, on the last stage, the final norm
  // (the final unit; norm is null on other stages), each between acquire and release; backward goes the other way
  // and reports each unit's gradients ready.
  template <class Block, class Norm>
  absl::StatusOr<Tensor> blocks_and_norm_forward(std::vector<Block>& blocks, Norm* norm, Tensor x, int64_t B,
                                                 int64_t T, ActivationStore& store);
  template <class Block, class Norm>
  absl::StatusOr<Tensor> norm_and_blocks_backward(std::vector<Block>& blocks, Norm* norm, const Tensor& dh,
                                                  int64_t B, int64_t T, ActivationStore& store);
  // A tied head shares unit 0 with the embedding; on a last stage without the embeddings, the final unit.
  int head_unit() const { return cfg_.tied() && stage_.first ? 0 : final_unit(); }
  // Before registering each group of parameters that forms a unit: the first group goes into the unit the
  // constructor started (this model's first), every later one into a new unit.
  void start_unit() {
    if (groups_++ > 0) params_.begin_unit();
  }
  // The head over `tied` (the token embedding) or, untied, over a new lm_head.weight in the current unit, split by
  // vocabulary rows as the embedding is.
  void add_head(Param* tied);

  ModelConfig cfg_;
  ParamSet& params_;  // not owned
  TensorParallel tp_;
  ContextParallel cp_;
  PipelineStage stage_;  // end_layer resolved
  int unit_base_ = 0;    // this model's first unit in params_ (> 0 for an interleaved pipeline's later chunks)
  int groups_ = 0;       // parameter groups registered so far (start_unit)
  std::optional<LmHead> head_;  // set by the architecture's constructor
  parallel::UnitHooks* hooks_ = nullptr;
  ActivationPolicy policy_;
  SwapTier* host_tier_ = nullptr;
  SwapTier* ssd_tier_ = nullptr;
};

template <class Block, class Norm>
absl::StatusOr<Tensor> Model::blocks_and_norm_forward(std::vector<Block>& blocks, Norm* norm, Tensor x, int64_t B,
                                                      int64_t T, ActivationStore& store) {
  constexpr parallel::UnitUse kUse = parallel::UnitUse::kValues;
  for (size_t l = 0; l < blocks.size(); ++l) {
    const int unit = block_unit(l);
    // A recompute segment keeps only its input; its blocks save nothing now (their backward runs them again).
    // A stream block keeps only its input too, and runs chunk by chunk both ways (stream_block.h).
    const bool recompute = recomputes(l);
    if ((recompute && segment_of(l).first == l) || streams(l)) {
      MEMTRAIN_RETURN_IF_ERROR(store.save(segment_input_key(l), x));
    }
    store.set_discarding(recompute || streams(l));
    store.begin_block(global_layer(l), {swap_tier(l), compresses(l), recomputes_attention(l)});
    MEMTRAIN_RETURN_IF_ERROR(acquire(unit, kUse));
    if (streams(l)) {
      MEMTRAIN_ASSIGN_OR_RETURN(
          x, stream_block_forward(blocks[l], x, B, T, policy_.stream_chunk_for(T), chunk_swap(l, T), store));
    } else {
      MEMTRAIN_ASSIGN_OR_RETURN(x, blocks[l].forward(x, B, T, store));
    }
    MEMTRAIN_RETURN_IF_ERROR(release(unit, kUse));
    MEMTRAIN_RETURN_IF_ERROR(store.end_block());
    store.set_discarding(false);
  }
  MEMTRAIN_RETURN_IF_ERROR(store.finish_forward());
  if (!stage_.last) return x;
  MEMTRAIN_RETURN_IF_ERROR(acquire(final_unit(), kUse));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor h, norm->forward(x, store));
  MEMTRAIN_RETURN_IF_ERROR(release(final_unit(), kUse));
  return h;
}

template <class Block, class Norm>
absl::StatusOr<Tensor> Model::norm_and_blocks_backward(std::vector<Block>& blocks, Norm* norm, const Tensor& dh,
                                                       int64_t B, int64_t T, ActivationStore& store) {
  constexpr parallel::UnitUse kUse = parallel::UnitUse::kValuesAndGrads;
  Tensor dx = dh;
  if (stage_.last) {
    MEMTRAIN_RETURN_IF_ERROR(acquire(final_unit(), kUse));
    MEMTRAIN_ASSIGN_OR_RETURN(dx, norm->backward(dh, store));
    MEMTRAIN_RETURN_IF_ERROR(release(final_unit(), kUse));
    MEMTRAIN_RETURN_IF_ERROR(grads_ready(final_unit()));
  }
  for (size_t l = blocks.size(); l-- > 0;) {
    const int unit = block_unit(l);
    // A swapped block comes back (read ahead by the block above), and the one below starts its way back.
    const int64_t next = l > 0 && swaps(l - 1) ? global_layer(l - 1) : -1;
    if (swaps(l) || next >= 0) MEMTRAIN_RETURN_IF_ERROR(store.fetch_block(global_layer(l), next));
    if (recomputes(l) && segment_of(l).second == l + 1) {
      // Entering a recompute segment from its top: its forward again, saving this time, from its input.
      const auto [s, e] = segment_of(l);
      MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, store.take(segment_input_key(s)));
      for (size_t j = s; j < e; ++j) {
        MEMTRAIN_RETURN_IF_ERROR(acquire(block_unit(j), parallel::UnitUse::kRecompute));
        MEMTRAIN_ASSIGN_OR_RETURN(x, blocks[j].forward(x, B, T, store));
        MEMTRAIN_RETURN_IF_ERROR(release(block_unit(j), parallel::UnitUse::kRecompute));
      }
    }
    MEMTRAIN_RETURN_IF_ERROR(acquire(unit, kUse));
    if (streams(l)) {
      MEMTRAIN_ASSIGN_OR_RETURN(Tensor x, store.take(segment_input_key(l)));
      MEMTRAIN_ASSIGN_OR_RETURN(
          dx, stream_block_backward(blocks[l], x, dx, B, T, policy_.stream_chunk_for(T), chunk_swap(l, T), store));
    } else {
      MEMTRAIN_ASSIGN_OR_RETURN(dx, blocks[l].backward(dx, B, T, store));
    }
    MEMTRAIN_RETURN_IF_ERROR(release(unit, kUse));
    MEMTRAIN_RETURN_IF_ERROR(grads_ready(unit));
  }
  return dx;
}

}  // namespace memtrain::model
