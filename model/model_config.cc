#include "model/model_config.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace memtrain::model {

int64_t ModelConfig::ffn() const {
  if (ffn_hidden > 0) return ffn_hidden;
  if (!is_llama()) return 4 * n_embd;
  const int64_t h = 2 * 4 * n_embd / 3;
  return (h + 31) / 32 * 32;
}

absl::Status ModelConfig::validate() const {
  if (arch != "gpt2" && arch != "llama")
    return config_error("model.arch", absl::StrCat("must be gpt2 or llama, got '", arch, "'"));
  auto positive = [](const char* key, int64_t v) {
    return v > 0 ? absl::OkStatus() : config_error(key, absl::StrCat("must be > 0, got ", v));
  };
  MEMTRAIN_RETURN_IF_ERROR(positive("model.vocab_size", vocab_size));
  MEMTRAIN_RETURN_IF_ERROR(positive("model.n_layer", n_layer));
  MEMTRAIN_RETURN_IF_ERROR(positive("model.n_head", n_head));
  MEMTRAIN_RETURN_IF_ERROR(positive("model.n_embd", n_embd));
  MEMTRAIN_RETURN_IF_ERROR(positive("model.block_size", block_size));
  if (vocab_size > (int64_t{1} << 31) - 1) return config_error("model.vocab_size", "must fit in int32");
  if (n_kv_head < 0) return config_error("model.n_kv_head", absl::StrCat("must be >= 0, got ", n_kv_head));
  if (ffn_hidden < 0) return config_error("model.ffn_hidden", absl::StrCat("must be >= 0, got ", ffn_hidden));
  if (n_embd % n_head != 0)
    return config_error("model.n_embd", absl::StrCat(n_embd, " is not divisible by model.n_head (", n_head, ")"));
  if (n_head % kv_heads() != 0)
    return config_error("model.n_kv_head",
                        absl::StrCat(kv_heads(), " does not divide model.n_head (", n_head, ")"));
  if (!is_llama() && n_kv_head != 0 && n_kv_head != n_head)
    return config_error("model.n_kv_head", "grouped-query attention needs model.arch = llama");
  if (is_llama() && head_dim() % 2 != 0)
    return config_error("model.n_embd", absl::StrCat("llama needs an even head dim for RoPE, got ", head_dim()));
  if (tie_embeddings != "auto" && tie_embeddings != "true" && tie_embeddings != "false")
    return config_error("model.tie_embeddings", absl::StrCat("must be auto, true or false, got '", tie_embeddings, "'"));
  if (!(norm_eps > 0)) return config_error("model.norm_eps", absl::StrCat("must be > 0, got ", norm_eps));
  if (!(rope_theta > 0)) return config_error("model.rope_theta", absl::StrCat("must be > 0, got ", rope_theta));
  if (!(init_std > 0)) return config_error("model.init_std", absl::StrCat("must be > 0, got ", init_std));
  if (sltrain_rank < 0) return config_error("model.sltrain_rank", absl::StrCat("must be >= 0, got ", sltrain_rank));
  if (!(sltrain_delta > 0 && sltrain_delta < 1))
    return config_error("model.sltrain_delta", absl::StrCat("must be in (0, 1), got ", sltrain_delta));
  if (!(sltrain_alpha > 0))
    return config_error("model.sltrain_alpha", absl::StrCat("must be > 0, got ", sltrain_alpha));
  return absl::OkStatus();
}

}  // namespace memtrain::model
