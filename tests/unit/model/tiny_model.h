// The small model the tests under tests/unit/model build: 2 layers, 4 heads (LLaMA: 2 key/value heads), width 32,
// context 24, and an odd vocabulary of 61 (odd sizes catch stride bugs and uneven tensor-parallel splits).
#pragma once

#include <string>

#include "model/model_config.h"

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

}  // namespace memtrain::model::testing
