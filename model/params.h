// Parameters with their global identity: Hugging Face name, global shape, kind (for weight-decay groups) and
// initialisation, drawn from Philox keyed by (seed, name, element index) so any shard can generate its own slice.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/tensor.h"

namespace memtrain::model {

enum class ParamKind : uint8_t { kWeight, kBias, kNorm, kEmbedding };

struct ParamInit {
  enum Kind : uint8_t { kNormal, kZeros, kOnes } kind = kNormal;
  float std = 0.02f;
};

struct Param {
  std::string name;  // "transformer.h.3.attn.c_attn.weight"
  Shape shape;       // global shape, as Hugging Face stores it
  ParamKind kind;
  ParamInit init;
  int unit = 0;      // the parameter unit (embeddings, one per block, final): what ZeRO-3 gathers at once
  Tensor value;      // fp32, category parameters
  Tensor grad;       // fp32, category gradients; accumulated with +=
};

class ParamSet {
 public:
  // Registers a parameter in the current unit; storage is allocated by allocate() (or by a data-parallel engine
  // that points value and grad into its own buffers). The returned reference stays valid.
  Param& add(std::string name, Shape shape, ParamKind kind, ParamInit init);
  // Later parameters go to the next unit. Units are numbered 0, 1, ... in registration (= forward) order.
  void begin_unit() { ++current_unit_; }
  int num_units() const { return current_unit_ + 1; }
  absl::Status allocate();         // values and zeroed gradients, accounted as parameters / gradients
  void initialize(uint64_t seed);  // every value from its ParamInit, layout-independent
  // Elements [begin, begin + n) of p's initial value (flat, row-major) into dst: what any shard of p starts from.
  static void initialize_slice(const Param& p, uint64_t seed, int64_t begin, int64_t n, float* dst);
  void zero_grad();

  Param* find(const std::string& name);
  const std::vector<std::unique_ptr<Param>>& all() const { return params_; }
  int64_t numel() const;

 private:
  std::vector<std::unique_ptr<Param>> params_;
  int current_unit_ = 0;
};

}  // namespace memtrain::model
