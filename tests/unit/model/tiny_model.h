// The small model the tests under tests/unit/model build: 2 layers, 4 heads (LLaMA: 2 key/value heads), width 32,
// context 24, and an odd vocabulary of 61 (odd sizes catch stride bugs and uneven tensor-parallel splits); and a
// lookup of their parameters by name.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "model/model_config.h"
#include "model/params.h"

namespace memtrain::model::testing {

inline ModelConfig tiny_model(const std::string& arch) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = 61;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = arch == "llama" ? 2 : 0;
  c.n_embd = 32;
  c.block_size = 24;
  return c;
}

// The parameter of `s` named `name` (a test failure, and the first parameter, when there is none).
inline const Param& find(const ParamSet& s, const std::string& name) {
  for (const auto& p : s.all())
    if (p->name == name) return *p;
  ADD_FAILURE() << "no " << name;
  return *s.all().front();
}

}  // namespace memtrain::model::testing
