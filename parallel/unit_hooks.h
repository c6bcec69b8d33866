// UnitHooks: how a model tells a data-parallel engine where it is. A "unit" is a group of parameters used
// together (the embeddings, one transformer block, the final norm and head). The model brackets every use of a
// unit's parameters with acquire/release and reports when a unit's gradients for this micro-batch are final; the
// engine uses that to gather sharded parameters just in time (ZeRO-3) and to start gradient reductions while the
// rest of backward runs. With no engine the model calls nothing.
#pragma once

#include "absl/status/status.h"

namespace memtrain::parallel {

enum class UnitUse {
  kValues,           // forward without gradients (evaluation, sampling)
  kValuesAndGrads,   // training forward/backward of the unit: values are read and gradients accumulated
  kGrads,            // gradients accumulated without reading values (embedding backward)
  kRecompute,        // a recompute segment's forward run again during backward: values only, nothing prefetched
};
inline bool uses_grads(UnitUse u) { return u == UnitUse::kValuesAndGrads || u == UnitUse::kGrads; }

class UnitHooks {
 public:
  virtual ~UnitHooks() = default;
  // Before the model touches unit `unit` as `use`; afterwards its parameters' value (and, when the use includes
  // gradients, grad) tensors are valid until the matching release. Calls nest.
  virtual absl::Status acquire(int unit, UnitUse use) = 0;
  virtual absl::Status release(int unit, UnitUse use) = 0;
  // No more gradient is added to `unit` in this micro-batch.
  virtual absl::Status grads_ready(int unit) = 0;
};

}  // namespace memtrain::parallel
