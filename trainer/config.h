// The whole run configuration: every section, the cross-section rules, and loading it from TOML plus
// `--set section.key=value` overrides. Each section declares its keys once in `visit`; this file turns that into the
// parser, the overrides, the resolved-config dump and the key reference in configs/README.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "data/data_config.h"
#include "model/lora_spec.h"
#include "model/model_config.h"
#include "optim/optim_config.h"
#include "parallel/parallel_config.h"
#include "parallel/zero_config.h"
#include "trainer/train_config.h"

namespace memtrain::trainer {

struct Config {
  model::ModelConfig model;
  data::DataConfig data;
  TrainConfig train;
  optim::OptimConfig optim;
  parallel::ParallelConfig parallel;
  parallel::ZeroConfig zero;
  OutputConfig output;
  MemoryConfig memory;
  OffloadConfig offload;
  SnapshotConfig snapshot;
  model::LoraSpec lora;

  // v(section_name, section) for every section, in the order files, dumps and docs list them.
  template <class V> void visit_sections(V& v) {
    v("model", model);
    v("data", data);
    v("train", train);
    v("optim", optim);
    v("parallel", parallel);
    v("zero", zero);
    v("output", output);
    v("memory", memory);
    v("offload", offload);
    v("snapshot", snapshot);
    v("lora", lora);
  }
  // Every section's own checks in visit order, then the rules that tie sections together (each names both keys).
  absl::Status validate() const;
};

// Whether offload.parameters may be set with the rest of `c` (ZeRO-3, adamw or adamw8bit, no hpZ): the error
// names offload.parameters and the key in the way. Config::validate and the planner both ask.
absl::Status parameter_offload_allowed(const Config& c);

// Background work that talks MPI from a second thread (train.checkpoint_async, snapshot.async): MPI must be
// initialized with MPI_THREAD_MULTIPLE.
inline bool needs_thread_multiple(const Config& c) {
  return c.train.checkpoint_async || (c.snapshot.interval > 0 && c.snapshot.async);
}

// Reads the TOML file at `path`, applies `overrides` ("section.key=value", from --set, in order, after the file),
// reads model.from_hf's config.json into [model] and validates. Errors name the file ("configs/x.toml:3:7: ...", "configs/x.toml: cannot read: ...") or the key
// ("train.max_stpes: unknown key; did you mean train.max_steps?"). A missing file is NotFound, all else
// InvalidArgument.
absl::StatusOr<Config> load_config(const std::string& path, const std::vector<std::string>& overrides);

// The same from TOML text; `source_name` stands for the file in messages. Missing keys keep their defaults.
// An override's value is read as the key's type: integers and floats as TOML numbers (floats also take integers),
// booleans as true/false, strings as given or TOML-quoted ("'a b'"), string lists as a TOML array (["a","b"]) or
// a comma-separated list (a,b; "" = empty).
// With validate = false only the keys and their types are checked (a checkpoint's saved config, of which only some
// sections matter to the reader).
absl::StatusOr<Config> parse_config(absl::string_view toml_text, absl::string_view source_name,
                                    const std::vector<std::string>& overrides, bool validate = true);

// The config as TOML text, every key of every section with a comment giving its doc; parse_config reads it back
// to an equal config (floats are written in their shortest exact form). In config_doc.cc.
std::string dump_config(const Config& config);

// A markdown table per section: key, type, default and doc of every key. configs/README.md holds its output.
// In config_doc.cc.
std::string config_reference_markdown();

// One key of the flat key list, pointing into a Config. The parser, the overrides, the dump and the docs all walk
// this list, so a key declared in a section's visit() exists everywhere at once.
enum class FieldType { kInt, kFloat, kBool, kString, kStringList, kIntList };
struct FieldRef {
  std::string section;  // "train"
  std::string key;      // "max_steps"
  FieldType type;
  std::string doc;
  void* value;  // int64_t*, double*, bool*, std::string* or std::vector<std::string>*, by type; points into the
                // Config given to bind_config_fields, so it lives as long as that Config.
  std::string full_key() const { return section + "." + key; }
};
std::vector<FieldRef> bind_config_fields(Config& config);

// "integer", "float", "boolean", "string", "array of strings".
absl::string_view field_type_name(FieldType type);

}  // namespace memtrain::trainer
