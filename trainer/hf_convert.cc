#include "trainer/hf_convert.h"

#include <filesystem>
#include <map>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoint/hf_directory.h"
#include "core/file_io.h"
#include "core/status.h"
#include "model/model.h"
#include "trainer/checkpoint_file.h"

namespace memtrain::trainer {
namespace {

using checkpoint::NamedTensor;
using nlohmann::json;

// Typed reads of config.json keys; the first error is kept and names the key.
struct HfKeys {
  const json& j;
  absl::Status status;

  bool present(const char* key) const { return j.contains(key) && !j[key].is_null(); }
  void fail(const char* key, const std::string& why) {
    if (status.ok()) status = absl::InvalidArgumentError(absl::StrCat("config.json: ", key, ": ", why));
  }
  int64_t integer(const char* key, std::optional<int64_t> fallback = std::nullopt) {
    if (!present(key) && fallback) return *fallback;
    if (!present(key) || !j[key].is_number_integer()) return fail(key, "missing or not an integer"), 0;
    return j[key].get<int64_t>();
  }
  double number(const char* key, double fallback) {
    if (!present(key)) return fallback;
    if (!j[key].is_number()) return fail(key, "not a number"), 0.0;
    return j[key].get<double>();
  }
  bool boolean(const char* key, bool fallback) {
    if (!present(key)) return fallback;
    if (!j[key].is_boolean()) return fail(key, "not true or false"), fallback;
    return j[key].get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) {
    if (!present(key)) return fallback;
    if (!j[key].is_string()) return fail(key, "not a string"), fallback;
    return j[key].get<std::string>();
  }
  // A feature memtrain's model does not have must be off (absent, null or `off`).
  void require(const char* key, const json& off, const std::string& why) {
    if (present(key) && j[key] != off) fail(key, absl::StrCat(j[key].dump(), " is not supported: ", why));
  }
};

std::string architecture(const json& j) {
  if (j.contains("model_type") && j["model_type"].is_string()) return j["model_type"].get<std::string>();
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty()) {
    const std::string a = j["architectures"][0].is_string() ? j["architectures"][0].get<std::string>() : "";
    if (a == "GPT2LMHeadModel") return "gpt2";
    if (a == "LlamaForCausalLM") return "llama";
    return a;
  }
  return "";
}

const char* torch_dtype(DType dt) {
  switch (dt) {
    case DType::kBF16: return "bfloat16";
    case DType::kF16: return "float16";
    default: return "float32";
  }
}

// A Hugging Face file's name for one of the model's parameters: GPT-2 files from the original release name the
// body without the "transformer." prefix.
std::string memtrain_name(const std::string& name, bool gpt2) {
  if (gpt2 && name.rfind("transformer.", 0) != 0 && name.rfind("lm_head.", 0) != 0) return "transformer." + name;
  return name;
}

// Buffers that some Hugging Face files carry besides the parameters (GPT-2's causal mask, LLaMA's RoPE table).
bool is_buffer(const std::string& name) {
  for (const char* suffix : {".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq"}) {
    const std::string s = suffix;
    if (name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) return true;
  }
  return false;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

absl::StatusOr<Tensor> converted(const Tensor& t, DType to) {
  if (t.dtype() == to) return t;
  MEMTRAIN_ASSIGN_OR_RETURN(Tensor out, Tensor::empty(t.shape(), to, MemCategory::kParameters));
  convert(t.raw(), t.dtype(), out.raw(), to, t.numel());
  return out;
}

}  // namespace

absl::StatusOr<model::ModelConfig> model_config_from_hf(const std::string& config_json) {
  const json j = json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("config.json: not a JSON object");
  HfKeys k{j, {}};
  model::ModelConfig m;
  m.arch = architecture(j);
  m.init_std = k.number("initializer_range", 0.02);
  if (m.arch == "gpt2") {
    m.vocab_size = k.integer("vocab_size");
    m.block_size = k.integer("n_positions", k.present("n_ctx") ? std::optional<int64_t>(k.integer("n_ctx")) : std::nullopt);
    m.n_embd = k.integer("n_embd");
    m.n_layer = k.integer("n_layer");
    m.n_head = k.integer("n_head");
    m.ffn_hidden = k.integer("n_inner", 0);
    m.norm_eps = k.number("layer_norm_epsilon", 1e-5);
    m.bias = true;
    m.tie_embeddings = k.boolean("tie_word_embeddings", true) ? "true" : "false";
    const std::string act = k.string("activation_function", "gelu_new");
    if (act != "gelu_new" && act != "gelu_pytorch_tanh")
      k.fail("activation_function", absl::StrCat("'", act, "' is not supported: memtrain's GPT-2 uses tanh GELU"));
    k.require("scale_attn_by_inverse_layer_idx", false, "attention scores are scaled by 1/sqrt(head_dim) only");
    k.require("scale_attn_weights", true, "attention scores are scaled by 1/sqrt(head_dim)");
  } else if (m.arch == "llama") {
    m.vocab_size = k.integer("vocab_size");
    m.block_size = k.integer("max_position_embeddings", 2048);
    m.n_embd = k.integer("hidden_size");
    m.n_layer = k.integer("num_hidden_layers");
    m.n_head = k.integer("num_attention_heads");
    m.n_kv_head = k.integer("num_key_value_heads", m.n_head);
    m.ffn_hidden = k.integer("intermediate_size");
    m.norm_eps = k.number("rms_norm_eps", 1e-6);
    m.rope_theta = k.number("rope_theta", 10000.0);
    m.bias = false;
    m.tie_embeddings = k.boolean("tie_word_embeddings", false) ? "true" : "false";
    const std::string act = k.string("hidden_act", "silu");
    if (act != "silu") k.fail("hidden_act", absl::StrCat("'", act, "' is not supported: memtrain's LLaMA uses SiLU"));
    k.require("rope_scaling", nullptr, "RoPE without scaling only");
    k.require("attention_bias", false, "projections have no biases");
    k.require("mlp_bias", false, "projections have no biases");
    if (k.present("head_dim") && m.n_head > 0) k.require("head_dim", m.n_embd / m.n_head, "head_dim = hidden_size / heads");
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: model_type: '", m.arch, "' is not supported (gpt2, llama)"));
  }
  MEMTRAIN_RETURN_IF_ERROR(k.status);
  MEMTRAIN_RETURN_IF_ERROR(m.validate());
  return m;
}

absl::Status read_hf_model_config(model::ModelConfig& m) {
  if (m.from_hf.empty()) return absl::OkStatus();
  const std::string path = (std::filesystem::path(m.from_hf) / "config.json").string();
  absl::StatusOr<std::string> text = read_file(path);
  if (!text.ok())
    return config_error("model.from_hf", absl::StrCat("cannot read ", path, " (", text.status().message(), ")"));
  absl::StatusOr<model::ModelConfig> hf = model_config_from_hf(*text);
  if (!hf.ok()) return config_error("model.from_hf", absl::StrCat(m.from_hf, ": ", hf.status().message()));
  hf->from_hf = m.from_hf;
  m = *hf;
  return absl::OkStatus();
}

absl::StatusOr<std::string> hf_config_from_model(const model::ModelConfig& m, DType dtype) {
  json j;
  if (m.is_llama()) {
    j = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"},     {"vocab_size", m.vocab_size},
         {"hidden_size", m.n_embd},               {"intermediate_size", m.ffn()}, {"num_hidden_layers", m.n_layer},
         {"num_attention_heads", m.n_head},       {"num_key_value_heads", m.kv_heads()},
         {"hidden_act", "silu"},                  {"max_position_embeddings", m.block_size},
         {"rms_norm_eps", m.norm_eps},            {"rope_theta", m.rope_theta}, {"attention_bias", false},
         {"mlp_bias", false}};
  } else {
    if (!m.bias) return config_error("model.bias", "false has no Hugging Face GPT-2 form (its layers have biases)");
    // memtrain trains without dropout; the exported model says so.
    j = {{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"}, {"vocab_size", m.vocab_size},
         {"n_positions", m.block_size}, {"n_ctx", m.block_size}, {"n_embd", m.n_embd}, {"n_layer", m.n_layer},
         {"n_head", m.n_head}, {"n_inner", m.ffn_hidden == 0 ? json(nullptr) : json(m.ffn_hidden)},
         {"activation_function", "gelu_new"}, {"layer_norm_epsilon", m.norm_eps}, {"embd_pdrop", 0.0},
         {"attn_pdrop", 0.0}, {"resid_pdrop", 0.0}};
  }
  j["initializer_range"] = m.init_std;
  j["tie_word_embeddings"] = m.tied();
  j["torch_dtype"] = torch_dtype(dtype);
  return j.dump(2);
}

absl::StatusOr<HfModel> read_hf_model(const std::string& hf_dir, MemCategory category) {
  MEMTRAIN_ASSIGN_OR_RETURN(checkpoint::HfDirectory hf, checkpoint::read_hf_directory(hf_dir, category));
  HfModel out;
  MEMTRAIN_ASSIGN_OR_RETURN(out.model, model_config_from_hf(hf.config_json));
  const model::ModelConfig& m = out.model;
  model::ParamSet whole;  // names and shapes only
  MEMTRAIN_RETURN_IF_ERROR(model::Model::create(m, whole).status());

  std::map<std::string, Tensor> found;
  std::vector<std::string> problems;
  for (NamedTensor& t : hf.tensors) {
    const std::string name = memtrain_name(t.name, !m.is_llama());
    if (is_buffer(name)) {
      ++out.skipped;
    } else if (t.tensor.dtype() != DType::kF32 && t.tensor.dtype() != DType::kBF16 && t.tensor.dtype() != DType::kF16) {
      problems.push_back(absl::StrCat(t.name, " is ", dtype_name(t.tensor.dtype()), ", not a float type"));
    } else if (!found.emplace(name, t.tensor).second) {
      problems.push_back(absl::StrCat(t.name, " appears twice"));
    }
  }
  // A tied model's files may carry the head as a copy of the embedding.
  const std::string embedding = m.is_llama() ? "model.embed_tokens.weight" : "transformer.wte.weight";
  if (m.tied() && found.count("lm_head.weight") && found.count(embedding)) {
    if (!same_bits(found.at("lm_head.weight"), found.at(embedding))) {
      problems.push_back("lm_head.weight differs from the tied embedding (tie_word_embeddings is true)");
    }
    found.erase("lm_head.weight");
    ++out.skipped;
  }
  for (const auto& p : whole.all()) {
    auto it = found.find(p->name);
    if (it == found.end()) {
      problems.push_back(absl::StrCat("missing ", p->name));
      continue;
    }
    if (it->second.shape() != p->shape) {
      problems.push_back(absl::StrCat(p->name, " is ", shape_string(it->second.shape()), ", the model needs ",
                                      shape_string(p->shape)));
    } else {
      out.dtypes[p->name] = std::string(dtype_name(it->second.dtype()));
      MEMTRAIN_ASSIGN_OR_RETURN(out.params[p->name], converted(it->second, DType::kF32));
    }
    found.erase(it);
  }
  for (const auto& [name, t] : found) problems.push_back(absl::StrCat(name, " is not a parameter of the model"));
  if (!problems.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(hf_dir, ": the tensors do not match the ", m.arch,
                                                   " model of its config.json: ", absl::StrJoin(problems, "; ")));
  }
  return out;
}

absl::StatusOr<ConvertSummary> import_hf(const std::string& hf_dir, const std::string& out_dir) {
  MEMTRAIN_ASSIGN_OR_RETURN(HfModel hf, read_hf_model(hf_dir, MemCategory::kParameters));
  model::ParamSet whole;  // the checkpoint lists the parameters in the model's order
  MEMTRAIN_RETURN_IF_ERROR(model::Model::create(hf.model, whole).status());
  std::vector<NamedTensor> params;
  for (const auto& p : whole.all()) params.push_back({p->name, hf.params.at(p->name)});
  Config cfg;
  cfg.model = hf.model;
  cfg.output.dir = out_dir;
  const json extra = {{"hf", {{"source", hf_dir}, {"dtypes", hf.dtypes}}}};
  MEMTRAIN_RETURN_IF_ERROR(write_weights_checkpoint(cfg, params, extra.dump()));
  return ConvertSummary{out_dir, hf.model, static_cast<int64_t>(params.size()), hf.skipped};
}

absl::StatusOr<ConvertSummary> write_hf_model(const std::string& out_dir, const model::ModelConfig& m,
                                              const std::vector<NamedTensor>& params,
                                              const std::map<std::string, std::string>& dtypes,
                                              std::optional<DType> dtype, int64_t max_shard_bytes) {
  std::map<DType, int64_t> used;
  std::vector<NamedTensor> tensors;
  for (const NamedTensor& p : params) {
    DType to = DType::kF32;
    if (dtype) {
      to = *dtype;
    } else if (auto it = dtypes.find(p.name); it != dtypes.end()) {
      MEMTRAIN_ASSIGN_OR_RETURN(to, dtype_from_name(it->second));
    }
    if (to != DType::kF32 && to != DType::kBF16 && to != DType::kF16)
      return absl::InvalidArgumentError(absl::StrCat(p.name, ": cannot export as ", dtype_name(to)));
    MEMTRAIN_ASSIGN_OR_RETURN(Tensor t, converted(p.tensor, to));
    tensors.push_back({p.name, std::move(t)});
    used[to] += p.tensor.numel();
  }
  DType main = DType::kF32;  // config.json's torch_dtype: the type of most elements
  for (const auto& [dt, n] : used) {
    if (n > used[main]) main = dt;
  }
  MEMTRAIN_ASSIGN_OR_RETURN(std::string config_json, hf_config_from_model(m, main));
  MEMTRAIN_RETURN_IF_ERROR(checkpoint::write_hf_directory(out_dir, config_json, tensors, max_shard_bytes));
  return ConvertSummary{out_dir, m, static_cast<int64_t>(tensors.size()), 0};
}

absl::StatusOr<ConvertSummary> export_hf(const std::string& checkpoint, const std::string& out_dir,
                                         std::optional<DType> dtype, int64_t max_shard_bytes) {
  MEMTRAIN_ASSIGN_OR_RETURN(CheckpointWeights w, read_checkpoint_weights(checkpoint));
  if (w.config.model.sltrain()) {
    return absl::InvalidArgumentError(absl::StrCat(w.path, ": an SLTrain run's checkpoint holds each projection as "
                                                   "low-rank and sparse factors (model.sltrain_rank > 0), which a "
                                                   "Hugging Face model has no place for"));
  }
  const json manifest = json::parse(w.manifest_json);
  std::map<std::string, std::string> dtypes;  // as imported
  if (manifest.contains("hf") && manifest["hf"].contains("dtypes") && manifest["hf"]["dtypes"].is_object()) {
    for (const auto& [name, dt] : manifest["hf"]["dtypes"].items())
      if (dt.is_string()) dtypes[name] = dt.get<std::string>();
  }
  return write_hf_model(out_dir, w.config.model, w.params, dtypes, dtype, max_shard_bytes);
}

}  // namespace memtrain::trainer
