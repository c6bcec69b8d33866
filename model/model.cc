#include "model/model.h"

#include <algorithm>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "model/attention.h"
#include "model/gpt2.h"
#include "model/llama.h"
#include "model/ring_attention.h"

namespace memtrain::model {

int64_t block_layer_of(absl::string_view name) {
  for (absl::string_view prefix : {"transformer.h.", "model.layers."}) {
    if (!absl::StartsWith(name, prefix)) continue;
    name.remove_prefix(prefix.size());
    int64_t layer = 0;
    if (absl::SimpleAtoi(name.substr(0, name.find('.')), &layer)) return layer;
  }
  return -1;
}

Model::Model(const ModelConfig& cfg, ParamSet& params, const TensorParallel& tp, const ContextParallel& cp,
             const PipelineStage& stage)
    : cfg_(cfg), params_(params), tp_(tp), cp_(cp), stage_(stage) {
  if (stage_.end_layer < 0) stage_.end_layer = cfg.n_layer;
  if (!params.all().empty()) {  // after another chunk's parameters: a unit of our own
    params.begin_unit();
    unit_base_ = params.num_units() - 1;
  }
  // The embeddings' unit is 0 (the first stage is the first chunk registered).
  MEMTRAIN_CHECK(!stage_.first || unit_base_ == 0);
}

absl::StatusOr<std::unique_ptr<Model>> Model::create(const ModelConfig& cfg, ParamSet& params,
                                                     const TensorParallel& tp, const ContextParallel& cp,
                                                     const PipelineStage& stage) {
  MEMTRAIN_RETURN_IF_ERROR(cfg.validate());
  if (std::string why = tensor_parallel_mismatch(cfg, tp.size); !why.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("parallel.tp = ", tp.size, ": ", why));
  }
  const int64_t end = stage.end_layer < 0 ? cfg.n_layer : stage.end_layer;
  MEMTRAIN_CHECK_MSG(0 <= stage.first_layer && stage.first_layer <= end && end <= cfg.n_layer,
                     "a pipeline stage's layers lie within the model");
  if (cfg.sltrain()) {
    params.use_sltrain({cfg.sltrain_rank, cfg.sltrain_delta,
                        static_cast<float>(cfg.sltrain_alpha / static_cast<double>(cfg.sltrain_rank))});
  }
  if (cfg.is_llama()) return std::unique_ptr<Model>(new LlamaModel(cfg, params, tp, cp, stage));
  return std::unique_ptr<Model>(new Gpt2Model(cfg, params, tp, cp, stage));
}

std::string Model::tensor_parallel_mismatch(const ModelConfig& cfg, int tp) {
  const int64_t kv = cfg.kv_heads();
  if (cfg.n_head % tp != 0) return absl::StrCat("does not divide model.n_head (", cfg.n_head, ")");
  if (kv % tp != 0 && tp % kv != 0)
    return absl::StrCat("and the key/value heads (", kv, ") must divide one another");
  if (cfg.ffn() % tp != 0) return absl::StrCat("does not divide the MLP width (", cfg.ffn(), ")");
  if (cfg.vocab_size < tp)
    return absl::StrCat("exceeds model.vocab_size (", cfg.vocab_size, "): a rank would hold no vocabulary rows");
  return "";
}

void Model::add_head(Param* tied) {
  const IndexRange vocab = tp_.part(cfg_.vocab_size);
  Param* weight = tied;
  if (!cfg_.tied()) {
    weight = &params_.add("lm_head.weight", {cfg_.vocab_size, cfg_.n_embd}, ParamKind::kWeight,
                          ParamInit{ParamInit::kNormal, static_cast<float>(cfg_.init_std)},
                          TpSplit::along(0, {vocab}));
  }
  head_.emplace("lm_head", weight, cfg_.vocab_size, cfg_.n_embd, vocab, tp_);
}

absl::Status Model::check_tokens(const Tensor& tokens) const {
  MEMTRAIN_CHECK(tokens.ndim() == 2 && tokens.dtype() == DType::kI32);
  if (tokens.dim(1) > cfg_.block_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence of ", tokens.dim(1), " tokens exceeds model.block_size ", cfg_.block_size));
  }
  for (int64_t i = 0; i < tokens.numel(); ++i) {
    const int32_t t = tokens.i32()[i];
    if (t < 0 || t >= cfg_.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", t, " outside [0, model.vocab_size=", cfg_.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<double> Model::forward(const Tensor& tokens, const Tensor& targets, float grad_scale,
                                       ActivationStore& store) {
  MEMTRAIN_CHECK_MSG(stage_.first && stage_.last, "forward runs a whole model; a pipeline stage runs forward_stage");
  double loss = 0;
  MEMTRAIN_RETURN_IF_ERROR(forward_stage(tokens, targets, Tensor(), grad_scale, store, &loss).status());
  return loss;
}

absl::Status Model::backward(ActivationStore& store) { return backward_stage(Tensor(), store).status(); }

absl::StatusOr<Tensor> Model::forward_stage(const Tensor& tokens, const Tensor& targets, const Tensor& x,
                                            float grad_scale, ActivationStore& store, double* loss) {
  MEMTRAIN_RETURN_IF_ERROR(check_tokens(tokens));
  if (cp_.group_size() == 1) return forward_local(tokens, targets, x, grad_scale, store, loss);
  if (tokens.dim(1) % cp_.pieces() != 0) {
    return absl::InvalidArgumentError(absl::StrCat("a sequence of ", tokens.dim(1), " tokens does not split into ",
                                                   cp_.pieces(), " context-parallel pieces"));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor local_tokens, cp_.local_tokens(tokens));
  Tensor local_targets;
  if (stage_.last) {
    MEMTRAIN_ASSIGN_OR_RETURN(local_targets, cp_.local_tokens(targets));
  }
  return forward_local(local_tokens, local_targets, x, grad_scale, store, loss);
}

absl::StatusOr<Tensor> Model::forward_local(const Tensor& tokens, const Tensor& targets, const Tensor& x,
                                            float grad_scale, ActivationStore& store, double* loss) {
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor h, body_forward(tokens, x, store));
  if (!stage_.last) return h;
  // In training the head also adds its weight gradient here.
  const parallel::UnitUse use = store.keeping() ? parallel::UnitUse::kValuesAndGrads : parallel::UnitUse::kValues;
  MEMTRAIN_RETURN_IF_ERROR(acquire(head_unit(), use));
  MEMTRAIN_ASSIGN_OR_RETURN(*loss, head_->forward(h, targets.view({targets.numel()}), grad_scale, store));
  MEMTRAIN_RETURN_IF_ERROR(release(head_unit(), use));
  return Tensor();
}

absl::StatusOr<Tensor> Model::backward_stage(const Tensor& dy, ActivationStore& store) {
  if (!stage_.last) return body_backward(dy, store);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor dh, head_->backward(store));
  return body_backward(dh, store);
}

absl::StatusOr<Tensor> Model::last_logits(const Tensor& tokens) {
  MEMTRAIN_RETURN_IF_ERROR(check_tokens(tokens));
  if (cp_.group_size() > 1 || !stage_.first || !stage_.last) {
    return absl::FailedPreconditionError("last_logits: sampling runs on a whole model without cp");
  }
  ActivationStore discard(/*keep=*/false);
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor h_rows, body_forward(tokens, Tensor(), discard));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor h, tp_.gather_rows(h_rows));
  const int64_t B = tokens.dim(0), T = tokens.dim(1), C = cfg_.n_embd;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor last, Tensor::empty({B, C}, DType::kF32, MemCategory::kActivations));
  for (int64_t b = 0; b < B; ++b)
    std::copy_n(h.f32() + ((b + 1) * T - 1) * C, C, last.f32() + b * C);
  MEMTRAIN_RETURN_IF_ERROR(acquire(head_unit(), parallel::UnitUse::kValues));
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor logits, head_->logits(last));
  MEMTRAIN_RETURN_IF_ERROR(release(head_unit(), parallel::UnitUse::kValues));
  return logits;
}

int64_t Model::predicted_activation_bytes(int64_t B, int64_t T) const {
  const auto [b, t] = local_batch(B, T);
  const int64_t chunk_tokens = chunk_tokens_bytes(b, t);
  const int64_t head = stage_.last ? LmHead::saved_bytes(tp_.local_rows(b * t), cfg_.n_embd) : 0;
  const BlockBytes blk = block_bytes(b, t);
  return body_saved_bytes(b, t) - num_blocks() * blk.saved + blocks_stored_bytes(num_blocks(), b, t) + head +
         chunk_tokens;
}

int64_t Model::blocks_stored_bytes(size_t end, int64_t b, int64_t t) const {
  const int64_t input = 4 * tp_.local_rows(b * t) * cfg_.n_embd;
  int64_t sum = 0;
  for (size_t j = 0; j < end; ++j) {
    if (recomputes(j)) {
      sum += segment_of(j).first == j ? input : 0;
    } else if (streams(j)) {
      sum += input;
    } else {
      sum += block_stored_bytes(j, b, t);
    }
  }
  return sum;
}

int64_t Model::block_stored_bytes(size_t l, int64_t b, int64_t t) const {
  const int64_t saved = block_bytes(b, t).saved;
  if (swaps(l)) return 0;
  if (compresses(l)) return saved - 2 * compress_saving(b, t);  // both projection inputs packed
  if (recomputes_attention(l)) return saved - attention_internal_bytes(cfg_, b, t, tp_.size);
  return saved;
}

int64_t Model::block_own_bytes(size_t l, int64_t b, int64_t t) const {
  const int64_t saved = block_bytes(b, t).saved;
  // A compressed block's MLP input is back in fp32 while its MLP backward runs; the attention input still packed.
  if (compresses(l)) return saved - compress_saving(b, t);
  if (recomputes_attention(l)) return saved - attention_internal_bytes(cfg_, b, t, tp_.size);
  return saved;
}

int64_t Model::blocks_held_bytes(size_t l, int64_t b, int64_t t) const {
  const int64_t saved = block_bytes(b, t).saved;
  // Block l's own saved tensors, with those of its recompute segment below it; the block below it, if swapped, is
  // already on its way back.
  const size_t s = recomputes(l) ? segment_of(l).first : l;
  const int64_t prefetched = l > 0 && swaps(l - 1) ? saved : 0;
  const int64_t own = recomputes(l) ? static_cast<int64_t>(l - s + 1) * saved : block_own_bytes(l, b, t);
  return blocks_stored_bytes(s, b, t) + own + prefetched;
}

int64_t Model::predicted_deferred_bytes(int64_t B, int64_t T) const {
  const auto [b, t] = local_batch(B, T);
  return num_blocks() * block_bytes(b, t).deferred;
}

int64_t Model::predicted_deferring_peak_activation_bytes(int64_t B, int64_t T) const {
  const auto [b, t] = local_batch(B, T);
  const BlockBytes blk = block_bytes(b, t);
  // In a block's MLP: what the blocks below it hold, its own saved tensors, the finished blocks' deferred ones,
  // what lives outside the blocks and the MLP backward's scratch (the ordinary high-water mark with the finished
  // blocks' saved tensors traded for their deferred ones), and the MLP's separate activation gradient.
  // In its attention: what the blocks below it hold, what the finished blocks defer, the block's own peak, and
  // what lives outside the blocks all through their backward: the cp chunk tokens (first stage) and the head's
  // dL/dh (last stage).
  const int64_t outside_mlp = predicted_activation_bytes(B, T) - blocks_stored_bytes(num_blocks(), b, t) +
                              backward_peak_extra_bytes(b, t) + blk.deferring_mlp_extra;
  const int64_t outside = chunk_tokens_bytes(b, t) + (stage_.last ? 4 * tp_.local_rows(b * t) * cfg_.n_embd : 0);
  int64_t peak = 0;
  for (size_t l = 0; l < static_cast<size_t>(num_blocks()); ++l) {
    const int64_t done = (num_blocks() - 1 - static_cast<int64_t>(l)) * blk.deferred;
    const int64_t held = blocks_held_bytes(l, b, t);
    const int64_t below = held - (recomputes(l) ? blk.saved : block_own_bytes(l, b, t));  // not block l's own
    peak = std::max({peak, held + done + outside_mlp, below + done + blk.deferring_attention_peak + outside});
  }
  return peak;
}

int64_t Model::predicted_peak_activation_bytes(int64_t B, int64_t T) const {
  const auto [b, t] = local_batch(B, T);
  // Reached in some block's MLP backward: what the blocks below hold and its own saved tensors (recomputed, with
  // those of its segment below it, under recompute), besides what lives outside the blocks.
  // A stream block's is in its chunk's MLP backward, with a chunk's scratch instead of the whole batch's, or in
  // its forward (stream_block.h), with the blocks below it stored.
  const BlockBytes blk = block_bytes(b, t);
  // (A stream block's term can be negative: the extra below counts a whole batch's MLP scratch.)
  int64_t blocks = num_blocks() > 0 ? std::numeric_limits<int64_t>::min() : 0, forward = 0;
  for (size_t l = 0; l < static_cast<size_t>(num_blocks()); ++l) {
    // A swapped block below is in memory too: still being written in forward, read back ahead in backward.
    const int64_t below = blocks_stored_bytes(l, b, t) + (l > 0 && swaps(l - 1) ? blk.saved : 0);
    // A stream_swap block's swapped chunk keeps its saved tensors in forward, next to the chunk before it (still
    // being written); in backward the next swapped chunk is read while one runs.
    const int64_t swapped = policy_.stream_swaps(global_layer(l)) ? swapped_chunks(t) : 0;
    const int64_t held = streams(l) ? below + blk.stream_backward_peak - blk.mlp_backward_scratch +
                                          (swapped > 1 ? blk.stream_chunk_saved : 0)
                                    : blocks_held_bytes(l, b, t);
    blocks = std::max(blocks, held);
    if (streams(l)) {
      forward = std::max(forward, chunk_tokens_bytes(b, t) + below + blk.stream_forward_peak +
                                      (swapped > 0 ? blk.stream_last_two_swapped : 0));
    }
  }
  return std::max(forward, predicted_activation_bytes(B, T) - blocks_stored_bytes(num_blocks(), b, t) + blocks +
                               backward_peak_extra_bytes(b, t));
}

int64_t Model::predicted_forward_only_peak_bytes(int64_t B, int64_t T) const {
  const auto [b, t] = local_batch(B, T);
  const BlockBytes blk = block_bytes(b, t);
  int64_t block = 0;
  for (size_t l = 0; l < static_cast<size_t>(num_blocks()); ++l)
    block = std::max(block, streams(l) ? blk.stream_forward_peak : blk.forward_only_peak);
  return chunk_tokens_bytes(b, t) + block;
}

int64_t Model::predicted_workspace_bytes(int64_t B, int64_t T) const {
  const auto [b, t] = local_batch(B, T);
  // Ring attention's backward holds delta = rowsum(dO * O), one float per query and local head.
  const int64_t ring = cp_.size > 1 ? 4 * b * t * (cfg_.n_head / tp_.size) : 0;
  const int64_t head = stage_.last ? head_->workspace_bytes(b * t) : 0;
  const int64_t positions = 4 * b * t;  // the position ids (GPT-2's embeddings, LLaMA's RoPE)
  // SLTrain: a projection's S as a dense matrix (forward, backward input), or x^T and dy^T for its values' gradient.
  int64_t sltrain = 0;
  if (cfg_.sltrain()) {
    const int64_t C = cfg_.n_embd, wide = std::max(cfg_.is_llama() ? C : 3 * C, cfg_.ffn()) / tp_.size;
    sltrain = 4 * std::max(C * wide, b * t * (C + wide));
  }
  return std::max({head, body_workspace_bytes(b, t), ring, positions, sltrain});
}

int64_t Model::predicted_swapped_bytes(int64_t B, int64_t T, LayerPolicy policy) const {
  const auto [b, t] = local_batch(B, T);
  // Whole blocks, and stream_swap blocks' swapped chunks, on the tier `policy` names.
  const LayerPolicy chunks = policy == LayerPolicy::kSwapHost ? LayerPolicy::kStreamSwapHost
                                                               : LayerPolicy::kStreamSwapSsd;
  const BlockBytes blk = block_bytes(b, t);
  int64_t bytes = 0;
  for (int64_t l = stage_.first_layer; l < stage_.end_layer; ++l)
    bytes += policy_.at(l) == policy ? blk.saved : policy_.at(l) == chunks ? blk.stream_swapped : 0;
  return bytes;
}

int64_t Model::predicted_communication_bytes(int64_t B, int64_t T) const {
  const auto [b, t] = local_batch(B, T);
  const int64_t kv_heads = cfg_.is_llama() ? LlamaAttention::local_kv_heads(cfg_, tp_.size) : cfg_.n_head / tp_.size;
  // The ring's buffer in blocks that attend unchunked; StreamBP's blocks gather every rank's keys and values (and
  // sum their gradients) through one buffer instead.
  bool any_stream = false, any_ring = false;
  for (size_t l = 0; l < static_cast<size_t>(num_blocks()); ++l) (streams(l) ? any_stream : any_ring) = true;
  const int64_t ring =
      any_ring ? ring_attention_backward_buffer_bytes(cp_, {b, t, cfg_.n_head / tp_.size, kv_heads, cfg_.head_dim()})
               : 0;
  return any_stream ? std::max(ring, key_value_exchange_bytes(cp_, b * t, kv_heads * cfg_.head_dim())) : ring;
}

double Model::flops_per_token(int64_t T) const {
  const double matmul_params = static_cast<double>(params_.numel() - embedding_params());
  return 6.0 * matmul_params + 12.0 * num_blocks() * cfg_.n_embd * T;
}

}  // namespace memtrain::model
