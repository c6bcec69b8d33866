// Parameters with their global identity: Hugging Face name, global shape, kind (for weight-decay groups), how
// tensor parallelism splits them, and initialisation, drawn from Philox keyed by (seed, name, global element index)
// so any shard can generate its own slice.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/tensor.h"
#include "model/lora_spec.h"
#include "model/nf4_weight.h"
#include "model/tensor_parallel.h"

namespace memtrain::model {

enum class ParamKind : uint8_t { kWeight, kBias, kNorm, kEmbedding };

struct ParamInit {
  enum Kind : uint8_t { kNormal, kZeros, kOnes, kUniform } kind = kNormal;
  float std = 0.02f;  // kNormal's standard deviation; kUniform draws from [-std, std]
};

// What part of a parameter this tp rank holds: along `dim`, the global index ranges `ranges`, concatenated in
// order (several for GPT-2's fused q|k|v columns); dim = -1 is the whole tensor. `primary` is true on exactly one
// of the tp ranks that hold the same part (rank 0 for a whole tensor; the first of the ranks that share a key/value
// head): global sums such as the gradient norm count the part there only.
struct TpSplit {
  int dim = -1;
  std::vector<IndexRange> ranges;
  bool primary = true;

  static TpSplit whole(const TensorParallel& tp) { return {-1, {}, tp.rank == 0}; }
  static TpSplit along(int dim, std::vector<IndexRange> ranges, bool primary = true) {
    return {dim, std::move(ranges), primary};
  }
};

struct Param {
  std::string name;   // "transformer.h.3.attn.c_attn.weight"
  Shape shape;        // global shape, as Hugging Face stores it
  Shape local_shape;  // what this rank holds (= shape without tensor parallelism)
  TpSplit tp;
  ParamKind kind;
  ParamInit init;
  int unit = 0;       // the parameter unit (embeddings, one per block, final): what ZeRO-3 gathers at once
  Tensor value;       // fp32, local_shape, category parameters
  Tensor grad;        // fp32, local_shape, category gradients; accumulated with +=; undefined when frozen
  // Fine-tuning: a frozen parameter has no gradient and no optimizer state (the base model under LoRA, and LoRA-FA's
  // A); an adapter is a LoRA A or B (not in the base model's files).
  bool frozen = false;
  bool adapter = false;
  // make_linear's weights: `in_out` is GPT-2's Conv1D layout (in, out). A frozen projection weight may be stored in
  // NF4 instead (QLoRA: `value` released, matmuls dequantize panels of `nf4`, which holds (out, in)).
  bool projection = false, in_out = false;
  std::shared_ptr<const Nf4Weight> nf4;
};

// Calls fn(local_offset, global_offset, n) for the runs of contiguous elements that make up p's local tensor
// (row-major flat offsets into the local and the global tensor), in local order.
void for_each_global_run(const Param& p, const std::function<void(int64_t, int64_t, int64_t)>& fn);

// SLTrain's shape of every block projection (ModelConfig's sltrain_*): rank, support density, low-rank scale.
struct SlTrainShape {
  int64_t r = 0;
  double delta = 0;
  float scale = 0;  // alpha / r
};

class ParamSet {
 public:
  // Registers a parameter in the current unit; storage is allocated by allocate() (or by a data-parallel engine
  // that points value and grad into its own buffers). The returned reference stays valid. Without `tp` the
  // parameter is whole on every rank.
  Param& add(std::string name, Shape shape, ParamKind kind, ParamInit init, TpSplit tp = {});
  // Fine-tuning with adapters: from now on add() registers into a second set this one owns, frozen_set() (the base
  // model's parameters, frozen: outside the data-parallel engine and the optimizer), and add_adapter() the adapters
  // that `spec` asks for (make_linear reads it). Both sets advance their units together.
  void fine_tune(LoraSpec spec);
  const LoraSpec* lora() const { return frozen_ ? &lora_ : nullptr; }
  // SLTrain: from now on make_linear registers low-rank + sparse factors instead of dense weights.
  void use_sltrain(SlTrainShape s) { sltrain_ = s; }
  const SlTrainShape* sltrain() const { return sltrain_.r > 0 ? &sltrain_ : nullptr; }
  ParamSet* frozen_set() const { return frozen_.get(); }  // null unless fine-tuning
  // An adapter tensor: trainable here, or (frozen) in frozen_set().
  Param& add_adapter(std::string name, Shape shape, ParamInit init, TpSplit tp, bool trainable);
  // Later parameters go to the next unit. Units are numbered 0, 1, ... in registration (= forward) order.
  void begin_unit() {
    ++current_unit_;
    if (frozen_) frozen_->begin_unit();
  }
  int num_units() const { return current_unit_ + 1; }
  // Values and zeroed gradients (none for frozen parameters), accounted as parameters / gradients.
  absl::Status allocate();
  void initialize(uint64_t seed);  // every value from its ParamInit, layout-independent
  // Elements [begin, begin + n) of p's initial global value (flat, row-major) into dst.
  static void initialize_slice(const Param& p, uint64_t seed, int64_t begin, int64_t n, float* dst);
  // The same for elements [begin, begin + n) of this rank's local tensor: what any shard of p starts from.
  static void initialize_local(const Param& p, uint64_t seed, int64_t begin, int64_t n, float* dst);
  // Elements [begin, begin + n) of this rank's local tensor taken from p's whole tensor `global` (p.shape).
  static void copy_local(const Param& p, const float* global, int64_t begin, int64_t n, float* dst);
  void zero_grad();
  // QLoRA: every frozen projection weight of this (base) set to NF4, its fp32 value released. A tensor-parallel
  // part is cut from the whole weight quantized (Nf4Weight::quantize_part), which `whole` gives (the global
  // tensor, p.shape); without it the values must be whole already.
  using WholeValue = std::function<absl::StatusOr<Tensor>(const Param&)>;
  absl::Status quantize_frozen_projections(const WholeValue& whole = nullptr);

  Param* find(const std::string& name);
  const std::vector<std::unique_ptr<Param>>& all() const { return params_; }
  int64_t numel() const;        // global elements
  int64_t local_numel() const;  // elements this rank holds
  // Bytes of this rank's values as allocate() and quantize_frozen_projections() (when nf4) leave them.
  int64_t local_value_bytes(bool nf4) const;

 private:
  Param& register_param(std::string name, Shape shape, ParamKind kind, ParamInit init, TpSplit tp);

  std::vector<std::unique_ptr<Param>> params_;
  int current_unit_ = 0;
  std::unique_ptr<ParamSet> frozen_;  // fine_tune's
  LoraSpec lora_;
  SlTrainShape sltrain_;
};

}  // namespace memtrain::model
