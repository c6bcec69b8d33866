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
#include "model/tensor_parallel.h"

namespace memtrain::model {

enum class ParamKind : uint8_t { kWeight, kBias, kNorm, kEmbedding };

struct ParamInit {
  enum Kind : uint8_t { kNormal, kZeros, kOnes } kind = kNormal;
  float std = 0.02f;
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
  Tensor grad;        // fp32, local_shape, category gradients; accumulated with +=
};

// Calls fn(local_offset, global_offset, n) for the runs of contiguous elements that make up p's local tensor
// (row-major flat offsets into the local and the global tensor), in local order.
void for_each_global_run(const Param& p, const std::function<void(int64_t, int64_t, int64_t)>& fn);

class ParamSet {
 public:
  // Registers a parameter in the current unit; storage is allocated by allocate() (or by a data-parallel engine
  // that points value and grad into its own buffers). The returned reference stays valid. Without `tp` the
  // parameter is whole on every rank.
  Param& add(std::string name, Shape shape, ParamKind kind, ParamInit init, TpSplit tp = {});
  // Later parameters go to the next unit. Units are numbered 0, 1, ... in registration (= forward) order.
  void begin_unit() { ++current_unit_; }
  int num_units() const { return current_unit_ + 1; }
  absl::Status allocate();         // values and zeroed gradients, accounted as parameters / gradients
  void initialize(uint64_t seed);  // every value from its ParamInit, layout-independent
  // Elements [begin, begin + n) of p's initial global value (flat, row-major) into dst.
  static void initialize_slice(const Param& p, uint64_t seed, int64_t begin, int64_t n, float* dst);
  // The same for elements [begin, begin + n) of this rank's local tensor: what any shard of p starts from.
  static void initialize_local(const Param& p, uint64_t seed, int64_t begin, int64_t n, float* dst);
  void zero_grad();

  Param* find(const std::string& name);
  const std::vector<std::unique_ptr<Param>>& all() const { return params_; }
  int64_t numel() const;        // global elements
  int64_t local_numel() const;  // elements this rank holds

 private:
  std::vector<std::unique_ptr<Param>> params_;
  int current_unit_ = 0;
};

}  // namespace memtrain::model
