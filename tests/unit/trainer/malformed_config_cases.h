// The table of malformed configs shared by the parser test (tests/unit/trainer/malformed_config_test.cc) and the
// binary test (tests/integration/malformed_config_cli_test.cc): each row is one way users get a config wrong.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace memtrain::testing_rows {

struct Malformed {
  const char* name;
  std::string toml;
  std::vector<std::string> overrides;
  const char* expect;     // must appear in the message: the key or the file
  bool add_data = true;   // append a valid [data] section so the row fails for its own reason only
};

inline void PrintTo(const Malformed& m, std::ostream* os) { *os << m.name; }  // gtest names the row, not its bytes

// Appended after the row's text, so line numbers in the row stay as written.
inline constexpr char kData[] = "\n[data]\ntext = [\"corpus.txt\"]\n";

inline const std::vector<Malformed>& cases() {
  static const std::vector<Malformed> rows = {
      // Unknown names, with and without a suggestion.
      {"unknown_key", "[train]\nfoo = 1", {}, "train.foo: unknown key; [train] has max_steps, batch_size"},
      {"typo_suggests", "[train]\nmax_stpes = 5", {}, "train.max_stpes: unknown key; did you mean train.max_steps?"},
      {"unknown_section_suggests", "[trian]\nmax_steps = 5", {}, "trian.max_steps: unknown key (no section [trian]); did you mean train.max_steps?"},
      {"unknown_empty_section", "[foo]\n", {}, "foo: unknown section; sections are model, data"},
      {"misspelt_empty_section", "[optm]\n", {}, "optm: unknown section; did you mean [optim]?"},
      {"key_outside_section", "max_steps = 5", {}, "max_steps: not inside a section; did you mean train.max_steps?"},
      {"key_in_wrong_section", "[train]\nlr = 0.1", {}, "train.lr: unknown key; did you mean optim.lr?"},
      {"nested_unknown_table", "[train.extra]\nx = 1", {}, "train.extra: unknown key"},
      // Wrong TOML types, one row per field type, and tables where scalars belong and back.
      {"string_for_int", "[train]\nmax_steps = \"5\"", {}, "train.max_steps: expected an integer, got string \"5\""},
      {"float_for_int", "[train]\nmax_steps = 3.5", {}, "train.max_steps: expected an integer, got float 3.5"},
      {"whole_float_for_int", "[train]\nbatch_size = 3.0", {}, "train.batch_size: expected an integer, got float 3.0"},
      {"string_for_float", "[optim]\nlr = \"fast\"", {}, "optim.lr: expected a number, got string"},
      {"bool_for_float", "[optim]\nlr = true", {}, "optim.lr: expected a number, got boolean"},
      {"int_for_bool", "[optim]\ndecay_embeddings = 1", {}, "optim.decay_embeddings: expected a boolean"},
      {"string_for_bool", "[output]\nsave_weights = \"yes\"", {}, "output.save_weights: expected a boolean"},
      {"int_for_string", "[model]\narch = 2", {}, "model.arch: expected a string, got integer 2"},
      {"string_for_list", "[data]\ntext = \"a.txt\"", {}, "data.text: expected an array of strings, got string", false},
      {"int_in_list", "[data]\ntext = [\"a.txt\", 1]", {}, "data.text: expected an array of strings, got integer 1 at index 1", false},
      {"date_for_int", "[train]\nmax_steps = 1979-05-27", {}, "train.max_steps: expected an integer, got date"},
      {"table_for_int", "[train.max_steps]\nx = 1", {}, "train.max_steps: expected an integer, got table"},
      {"inline_table_for_float", "[optim]\nlr = { value = 1 }", {}, "optim.lr: expected a number, got table"},
      {"array_for_string", "[output]\ndir = [\"a\"]", {}, "output.dir: expected a string, got array"},
      {"scalar_for_section", "train = 5", {}, "train: expected a table (section [train]), got integer 5"},
      {"array_of_tables_for_section", "[[train]]\nmax_steps = 1", {}, "train: expected a table (section [train]), got array"},
      {"nan_float", "[optim]\nlr = nan", {}, "optim.lr: expected a finite number"},
      {"inf_float", "[output]\ntemperature = inf", {}, "output.temperature: expected a finite number"},
      // Out of range: each section's validate().
      {"zero_steps", "[train]\nmax_steps = 0", {}, "train.max_steps: must be > 0, got 0"},
      {"negative_batch", "[train]\nbatch_size = -1", {}, "train.batch_size: must be > 0, got -1"},
      {"negative_seed", "[train]\nseed = -5", {}, "train.seed: must be >= 0"},
      {"negative_threads", "[train]\nthreads = -1", {}, "train.threads: must be >= 0"},
      {"zero_vocab", "[model]\nvocab_size = 0", {}, "model.vocab_size: must be > 0"},
      {"n_embd_not_divisible", "[model]\nn_embd = 130\nn_head = 4", {}, "model.n_embd: 130 is not divisible by model.n_head (4)"},
      {"n_kv_head_not_dividing", "[model]\narch = \"llama\"\nn_head = 4\nn_kv_head = 3", {}, "model.n_kv_head: 3 does not divide model.n_head (4)"},
      {"bad_arch", "[model]\narch = \"bert\"", {}, "model.arch: must be gpt2 or llama"},
      {"bad_optimizer", "[optim]\nname = \"sgd\"", {}, "optim.name: must be adamw"},
      {"bad_schedule", "[optim]\nschedule = \"step\"", {}, "optim.schedule: must be constant, cosine or linear"},
      {"min_lr_above_lr", "[optim]\nlr = 1e-4\nmin_lr = 1e-3", {}, "optim.min_lr: 0.001 exceeds optim.lr (0.0001)"},
      {"beta1_one", "[optim]\nbeta1 = 1.0", {}, "optim.beta1: must be in [0, 1)"},
      {"beta2_integer_one", "[optim]\nbeta2 = 1", {}, "optim.beta2: must be in [0, 1)"},
      {"zero_eps", "[optim]\neps = 0", {}, "optim.eps: must be > 0"},
      {"smmf_decay_rate_zero", "[optim]\nsmmf_decay_rate = 0.0", {}, "optim.smmf_decay_rate: must be in [-1, 0), got 0"},
      {"smmf_growth_rate_above_one", "", {"optim.smmf_growth_rate=1.5"}, "optim.smmf_growth_rate: must be in (0, 1], got 1.5"},
      {"negative_clip", "[optim]\ngrad_clip = -1.0", {}, "optim.grad_clip: must be >= 0"},
      {"empty_output_dir", "[output]\ndir = \"\"", {}, "output.dir: must not be empty"},
      {"zero_temperature", "[output]\ntemperature = 0", {}, "output.temperature: must be > 0"},
      {"bad_budget", "[memory]\nbudget = \"lots\"", {}, "memory.budget: 'lots' is not a byte size"},
      {"bad_budget_unit", "[memory]\nbudget = \"2XB\"", {}, "memory.budget: '2XB' is not a byte size (unknown unit 'XB')"},
      {"negative_budget", "[memory]\nbudget = \"-1GiB\"", {}, "memory.budget: '-1GiB' is not a byte size (negative)"},
      {"integer_budget", "[memory]\nbudget = 1024", {}, "memory.budget: expected a string, got integer"},
      {"bad_val_fraction", "[data]\ntext = [\"a\"]\nval_fraction = 1.5", {}, "data.val_fraction", false},
      {"dataset_and_text", "[data]\ndataset = \"d\"\ntext = [\"a\"]", {}, "data.text: set one of data.dataset, data.text and data.instructions", false},
      // Rules across sections.
      {"seq_len_over_block", "[model]\nblock_size = 256\n[train]\nseq_len = 512", {}, "train.seq_len: 512 exceeds model.block_size (256)"},
      {"vocab_below_tokenizer", "[model]\nvocab_size = 100", {}, "model.vocab_size: 100 is smaller than the byte tokenizer's 256 (data.tokenizer)"},
      {"warmup_over_decay", "[optim]\nwarmup_steps = 200\ndecay_steps = 100", {}, "optim.warmup_steps: 200 exceeds optim.decay_steps (100)"},
      // The file itself.
      {"empty_file_needs_data", "", {}, "data.dataset: set data.dataset, data.text or data.instructions", false},
      {"syntax_error_line", "[train]\nmax_steps = 5\nseed = = 3", {}, "configs/x.toml:3:"},
      {"unterminated_string", "[output]\ndir = \"runs", {}, "configs/x.toml:2:"},
      {"duplicate_key", "[train]\nmax_steps = 5\nmax_steps = 6", {}, "configs/x.toml:3:"},
      {"duplicate_section", "[train]\nseed = 1\n[train]\nseed = 2", {}, "configs/x.toml:3:"},
      {"huge_integer", "[train]\nseed = 99999999999999999999", {}, "configs/x.toml:2:"},
      {"binary_garbage", std::string("\x7f" "ELF\x02\x01\x01\x00\x00\xff\xfe", 11), {}, "configs/x.toml:1:8: not a UTF-8 text file (byte 0x00 at offset 7)", false},
      {"invalid_utf8_in_string", "[output]\nprompt = \"\xc3\x28\"", {}, "configs/x.toml:2:11: not a UTF-8 text file (byte 0xc3 at offset 19)"},
      // --set overrides.
      {"override_without_equals", "", {"train.max_steps"}, "train.max_steps: --set needs section.key=value"},
      {"override_empty_key", "", {"=5"}, "--set: needs section.key=value"},
      {"override_unknown_section", "", {"trian.max_steps=5"}, "trian.max_steps: unknown key (no section [trian]); did you mean train.max_steps?"},
      {"override_unknown_key", "", {"train.foo=1"}, "train.foo: unknown key"},
      {"override_without_section", "", {"max_steps=5"}, "max_steps: not inside a section; did you mean train.max_steps?"},
      {"override_word_for_int", "", {"train.max_steps=abc"}, "train.max_steps: expected an integer, got 'abc' (--set)"},
      {"override_empty_int", "", {"train.max_steps="}, "train.max_steps: expected an integer, got ''"},
      {"override_float_for_int", "", {"train.max_steps=2.5"}, "train.max_steps: expected an integer, got float 2.5 (--set)"},
      {"override_quoted_int", "", {"train.max_steps=\"5\""}, "train.max_steps: expected an integer, got string"},
      {"override_huge_int", "", {"train.seed=99999999999999999999"}, "train.seed: '99999999999999999999' does not fit in a 64-bit integer"},
      {"override_yes_for_bool", "", {"optim.decay_embeddings=yes"}, "optim.decay_embeddings: expected a boolean (true or false), got 'yes'"},
      {"override_word_for_float", "", {"optim.lr=fast"}, "optim.lr: expected a number, got 'fast'"},
      {"override_two_values", "", {"train.max_steps=5\nseed = 3"}, "train.max_steps: expected an integer, got '5\\nseed = 3' (--set)"},
      {"override_out_of_range", "", {"optim.lr=-1"}, "optim.lr: must be > 0, got -1"},
      {"override_unterminated_string", "", {"output.prompt=\"abc"}, "output.prompt: expected a string"},
      {"override_list_empty_item", "", {"data.text=a,,b"}, "data.text: empty item in list 'a,,b'", false},
      {"override_list_of_ints", "", {"data.text=[1, 2]"}, "data.text: expected an array of strings, got integer 1 at index 0", false},
      {"int_list_of_strings", "[parallel]\npp = 2\npp_layers = [\"a\", 2]", {}, "parallel.pp_layers: expected an array of integers, got string \"a\" at index 0"},
      {"int_for_int_list", "[parallel]\npp_layers = 3", {}, "parallel.pp_layers: expected an array of integers, got integer 3"},
      {"override_int_list_word", "", {"parallel.pp=2", "parallel.pp_layers=1,x"}, "parallel.pp_layers: expected an array of integers, got '[1,x]' (--set)"},
      {"override_int_list_float", "", {"parallel.pp=2", "parallel.pp_layers=1,2.5"}, "parallel.pp_layers: expected an array of integers, got float 2.5 at index 1"},
      {"pp_layers_count", "[parallel]\npp = 2\npp_layers = [1, 1, 2]", {}, "parallel.pp_layers: 3 entries for 2 stages (parallel.pp * parallel.pp_chunks)"},
      {"pp_layers_empty_middle", "[parallel]\npp = 3\npp_layers = [1, 0, 1]", {}, "parallel.pp_layers: stage 1 has 0 layers; a middle stage needs >= 1"},
      {"pp_layers_negative", "[parallel]\npp = 2\npp_layers = [-1, 3]", {}, "parallel.pp_layers: stage 0 has -1 layers; the first and last stage need >= 0"},
      {"override_invalid_utf8", "", {"output.prompt=\xff"}, "output.prompt: value is not valid UTF-8 (--set)"},
      {"override_then_invalid", "[train]\nmax_steps = 10", {"train.max_steps=0"}, "train.max_steps: must be > 0"},
      {"activation_policy_unknown", "[memory]\nactivations = [\"recompte\"]", {}, "memory.activations: unknown activation policy \"recompte\"; one of keep, recompute"},
      {"activation_policy_count", "[model]\nn_layer = 3\n[memory]\nactivations = [\"keep\", \"recompute\"]", {}, "memory.activations: has 2 entries: give one policy for every layer or one per layer (model.n_layer = 3)"},
      {"activation_policy_entry", "", {"model.n_layer=2", "memory.activations=keep,swap"}, "memory.activations: entry 1: unknown activation policy \"swap\""},
      {"recompute_segment_negative", "[memory]\nrecompute_segment = -1", {}, "memory.recompute_segment: must be >= 0"},
      {"stream_chunk_negative", "[memory]\nstream_chunk = -2", {}, "memory.stream_chunk: must be >= 0"},
      {"stream_context_parallel", "", {"memory.activations=stream", "parallel.cp=2"}, "parallel.cp: memory.activations = stream runs without context parallelism (cp = 1)"},
      {"stream_sequence_parallel", "", {"memory.activations=stream", "parallel.tp=2", "parallel.sequence_parallel=true"}, "parallel.sequence_parallel: memory.activations = stream runs without sequence parallelism"},
      {"stream_lora_dropout", "", {"memory.activations=stream", "lora.r=4", "lora.dropout=0.1"}, "lora.dropout: memory.activations = stream runs without dropout"},
      {"swap_ssd_without_path", "", {"memory.activations=swap_ssd"}, "offload.ssd_path: must name a directory: memory.activations uses swap_ssd"},
      {"auto_without_budget", "", {"memory.activations=auto"}, "memory.activations: \"auto\" chooses policies that fit memory.budget; set one"},
      {"offload_optimizer_unknown", "[offload]\noptimizer = \"disk\"", {}, "offload.optimizer: must be \"none\" or \"ssd\", got 'disk'"},
      {"offload_optimizer_without_path", "", {"offload.optimizer=ssd"}, "offload.ssd_path: must name a directory: offload.optimizer = \"ssd\""},
      {"offload_optimizer_not_adamw", "", {"offload.optimizer=ssd", "offload.ssd_path=/tmp", "optim.name=adafactor"}, "offload.optimizer: \"ssd\" streams AdamW's moments; optim.name is 'adafactor'"},
      {"snapshot_interval_negative", "", {"snapshot.interval=-2"}, "snapshot.interval: must be >= 0, got -2"},
      {"snapshot_k_zero", "", {"snapshot.k=0"}, "snapshot.k: must be >= 1, got 0"},
      {"snapshot_m_too_many", "", {"snapshot.k=200", "snapshot.m=60"}, "snapshot.m: must be >= 0 with k + m <= 256, got 60"},
      {"snapshot_job_slash", "", {"snapshot.job=a/b"}, "snapshot.job: letters, digits, '_' and '-' only, got 'a/b'"},
      {"snapshot_job_long", "", {"snapshot.job=" + std::string(41, 'j')}, "snapshot.job: at most 40 characters, got 41"},
      {"snapshot_keeper_timeout_zero", "", {"snapshot.keeper_timeout_s=0"},
       "snapshot.keeper_timeout_s: must be >= 1, got 0"},
      {"offload_parameters_unknown", "", {"offload.parameters=nvme"}, "offload.parameters: must be \"none\", \"host\" or \"ssd\", got 'nvme'"},
      {"offload_parameters_without_path", "", {"offload.parameters=ssd", "zero.stage=3"}, "offload.ssd_path: must name a directory: offload.parameters = \"ssd\""},
      {"offload_parameters_below_zero3", "", {"offload.parameters=host", "zero.stage=2"}, "offload.parameters: offloads ZeRO-3's parameter shard; zero.stage is 2"},
      {"offload_parameters_galore", "", {"offload.parameters=host", "zero.stage=3", "optim.name=galore_adamw"}, "offload.parameters: needs an optimizer that updates one piece at a time (adamw, adamw8bit); optim.name is 'galore_adamw'"},
      {"coap_update_interval_zero", "", {"optim.coap_update_interval=0"}, "optim.coap_update_interval: must be >= 1, got 0"},
      {"coap_reproject_factor_zero", "", {"optim.coap_reproject_factor=0"}, "optim.coap_reproject_factor: must be >= 1, got 0"},
      {"coap_scale_negative", "", {"optim.coap_scale=-1"}, "optim.coap_scale: must be > 0, got -1"},
      {"lisa_layers_negative", "", {"optim.lisa_layers=-1"}, "optim.lisa_layers: must be >= 0, got -1"},
      {"lisa_interval_zero", "", {"optim.lisa_interval=0"}, "optim.lisa_interval: must be >= 1, got 0"},
      {"lisa_galore", "", {"optim.lisa_layers=1", "optim.name=galore_adamw"}, "optim.lisa_layers: trains with adamw or adamw8bit; optim.name is 'galore_adamw'"},
      {"lisa_too_many_layers", "", {"optim.lisa_layers=99"}, "optim.lisa_layers: 99 exceeds model.n_layer"},
      {"lisa_pipeline", "", {"optim.lisa_layers=1", "parallel.pp=2"}, "optim.lisa_layers: runs without pipeline parallelism"},
      {"lisa_snapshots", "", {"optim.lisa_layers=1", "snapshot.interval=5"}, "optim.lisa_layers: keeps no in-memory snapshots"},
      {"periodic_lora_negative", "", {"lora.r=4", "lora.periodic_interval=-1"}, "lora.periodic_interval: must be >= 0, got -1"},
      {"periodic_lora_without_adapters", "", {"lora.periodic_interval=5"}, "lora.periodic_interval: restarts adapters; set lora.r > 0"},
      {"periodic_lora_nf4", "", {"lora.r=4", "lora.quantize_base=nf4", "lora.periodic_interval=5"}, "lora.periodic_interval: merges the adapters into the base weights, which an NF4 base"},
      {"periodic_lora_zero3", "", {"lora.r=4", "lora.periodic_interval=5", "zero.stage=3"}, "zero.stage: lora.periodic_interval merges whole adapters into the base on every rank"},
      {"periodic_lora_snapshots", "", {"lora.r=4", "lora.periodic_interval=5", "snapshot.interval=5"}, "lora.periodic_interval: changes the base, which in-memory snapshots do not hold"},
      {"lora_init_unknown", "", {"lora.r=4", "lora.init=pissa"}, "lora.init: must be default, lora_ga or quailora, got 'pissa'"},
      {"lora_ga_batches_zero", "", {"lora.r=4", "lora.ga_batches=0"}, "lora.ga_batches: must be >= 1, got 0"},
      {"lora_ga_gamma_zero", "", {"lora.r=4", "lora.ga_gamma=0"}, "lora.ga_gamma: must be > 0, got 0"},
      {"lora_ga_nf4", "", {"lora.r=4", "lora.init=lora_ga", "lora.quantize_base=nf4"}, "lora.init: lora_ga offsets the base weights"},
      {"lora_ga_offload", "", {"lora.r=4", "lora.init=lora_ga", "zero.stage=3", "offload.parameters=host"}, "lora.init: changes adapters in memory"},
      {"quailora_without_nf4", "", {"lora.r=4", "lora.init=quailora"}, "lora.init: quailora starts the adapters from an NF4 base"},
      {"quailora_calib_zero", "", {"lora.r=4", "lora.calib_batches=0"}, "lora.calib_batches: must be >= 1, got 0"},
      {"quailora_als_negative", "", {"lora.r=4", "lora.als_iters=-1"}, "lora.als_iters: must be >= 0, got -1"},
      {"quailora_offload", "", {"lora.r=4", "lora.init=quailora", "lora.quantize_base=nf4", "zero.stage=3", "offload.parameters=host"}, "lora.init: quailora sets the adapters in memory"},
      {"lora_ga_zo_sgd", "", {"lora.r=4", "lora.init=lora_ga", "optim.name=zo_sgd"}, "lora.init: lora_ga estimates a gradient by backward"},
      {"sltrain_rank_negative", "", {"model.sltrain_rank=-1"}, "model.sltrain_rank: must be >= 0, got -1"},
      {"sltrain_delta_one", "", {"model.sltrain_delta=1"}, "model.sltrain_delta: must be in (0, 1), got 1"},
      {"sltrain_alpha_zero", "", {"model.sltrain_alpha=0"}, "model.sltrain_alpha: must be > 0, got 0"},
      {"sltrain_lora", "", {"model.sltrain_rank=4", "lora.r=4"}, "lora.r: fine-tunes dense projections; model.sltrain_rank > 0"},
      {"zo_eps_zero", "", {"optim.zo_eps=0"}, "optim.zo_eps: must be > 0, got 0"},
      {"zo_sgd_pipeline", "", {"optim.name=zo_sgd", "parallel.pp=2"}, "parallel.pp: optim.name = \"zo_sgd\" runs without pipeline parallelism (pp = 1)"},
      {"zo_sgd_context_parallel", "", {"optim.name=zo_sgd", "parallel.cp=2"}, "parallel.cp: optim.name = \"zo_sgd\" runs without context parallelism (cp = 1)"},
      {"zo_sgd_hpz", "", {"optim.name=zo_sgd", "zero.stage=3", "zero.hpz_partition_size=2"}, "zero.hpz_partition_size: optim.name = \"zo_sgd\" keeps no hpZ copy"},
      {"zo_sgd_qwz", "", {"optim.name=zo_sgd", "zero.stage=3", "zero.quantized_weights=true"}, "zero.quantized_weights: optim.name = \"zo_sgd\" needs exact gathers"},
      {"zo_sgd_auto_activations", "", {"optim.name=zo_sgd", "memory.activations=auto", "memory.budget=1GiB"}, "memory.activations: optim.name = \"zo_sgd\" keeps no activations"},
      {"offload_parameters_zo_sgd", "", {"offload.parameters=host", "zero.stage=3", "optim.name=zo_sgd"}, "offload.parameters: needs an optimizer that updates one piece at a time (adamw, adamw8bit); optim.name is 'zo_sgd'"},
      {"offload_parameters_hpz", "", {"offload.parameters=host", "zero.stage=3", "zero.hpz_partition_size=2"}, "offload.parameters: keeps no hpZ copy in memory; set zero.hpz_partition_size = 1"},
  };
  return rows;
}

}  // namespace memtrain::testing_rows
