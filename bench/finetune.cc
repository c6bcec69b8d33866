// Fine-tuning figures: full fine-tuning, LoRA and QLoRA of the same LLaMA-style model (about 100M parameters,
// random, written as a Hugging Face directory in bf16 and read back through model.from_hf), each trained a few
// steps in this process. Prints, per run, the median step time and the peak bytes per category as the allocator
// counted them in the last step (metrics.jsonl's mem), with parameters split into the frozen base and the trained
// tensors, next to what `memtrain plan` predicts.
// Usage: bench/finetune [--steps N] [--set section.key=value ...] (the sets apply to every run).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/run_figures.h"
#include "core/memory.h"
#include "trainer/config.h"
#include "trainer/hf_convert.h"
#include "trainer/pipeline.h"
#include "trainer/plan.h"
#include "trainer/session.h"
#include "trainer/train_loop.h"

using namespace memtrain;

namespace {

constexpr char kModel[] =
    "[model]\narch = \"llama\"\nvocab_size = 16384\nn_layer = 12\nn_head = 12\nn_kv_head = 4\nn_embd = 768\n"
    "ffn_hidden = 2048\nblock_size = 256\n";

std::string mib(int64_t b) {
  char s[32];
  std::snprintf(s, sizeof s, "%.1f", static_cast<double>(b) / (1 << 20));
  return s;
}

absl::Status run(int steps, const std::vector<std::string>& sets) {
  const std::string dir = (std::filesystem::temp_directory_path() / "memtrain_bench_finetune").string();
  std::filesystem::remove_all(dir);
  const std::string text = std::string(MEMTRAIN_SOURCE_DIR) + "/README.md";
  const std::string toml = std::string(kModel) + "[data]\ntext = [\"" + text + "\"]\ntokenizer = \"byte\"\n" +
                           "[train]\nbatch_size = 2\nlog_interval = 1\neval_interval = 0\neval_batches = 1\n" +
                           "[output]\nsave_weights = false\nsamples = 0\n";
  // The base: the seed's model in Hugging Face's layout.
  {
    MEMTRAIN_ASSIGN_OR_RETURN(trainer::Config cfg, trainer::parse_config(toml, "bench", {"output.dir=" + dir + "/x"}));
    trainer::apply_runtime(cfg);
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<trainer::ModelBundle> bundle, trainer::build_model(cfg));
    std::vector<checkpoint::NamedTensor> params;
    for (const auto& p : bundle->params.all()) params.push_back({p->name, p->value});
    MEMTRAIN_RETURN_IF_ERROR(
        trainer::write_hf_model(dir + "/base", cfg.model, params, {}, DType::kBF16, int64_t{2} << 30).status());
    std::printf("base: llama, %lld parameters, bf16 Hugging Face directory\n",
                static_cast<long long>(bundle->params.numel()));
  }
  const std::string targets = "lora.target_modules=q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";
  struct Run {
    const char* name;
    std::vector<std::string> sets;
  };
  const std::vector<Run> runs = {{"full", {}},
                                 {"lora", {"lora.r=16", "lora.alpha=32", targets}},
                                 {"qlora", {"lora.r=16", "lora.alpha=32", targets, "lora.quantize_base=nf4"}}};
  std::printf("%-6s %10s %10s %10s %10s %10s %10s %12s %10s\n", "run", "step_ms", "base_MiB", "trained_MiB",
              "grads_MiB", "optim_MiB", "act_MiB", "sum_MiB", "plan_MiB");
  for (const Run& r : runs) {
    std::vector<std::string> o = sets;
    o.push_back("model.from_hf=" + dir + "/base");
    o.push_back("output.dir=" + dir + "/" + r.name);
    o.push_back("train.max_steps=" + std::to_string(steps));
    o.insert(o.end(), r.sets.begin(), r.sets.end());
    MEMTRAIN_ASSIGN_OR_RETURN(trainer::Config cfg, trainer::parse_config(toml, "bench", o));
    MEMTRAIN_RETURN_IF_ERROR(trainer::run_training(cfg, /*quiet=*/true).status());
    const bench::RunFigures run = bench::read_run_figures(dir + "/" + r.name + "/metrics.jsonl");
    const nlohmann::json& mem = run.last["mem"];
    // Parameters split by what the set holds: the frozen base (fp32 or NF4) and the trained tensors.
    model::ParamSet shapes;
    MEMTRAIN_RETURN_IF_ERROR(trainer::create_rank_models(cfg, shapes, {}, {}, 0, 1).status());
    const int64_t trained = 4 * shapes.local_numel();
    const int64_t base = shapes.frozen_set() ? shapes.frozen_set()->local_value_bytes(cfg.lora.nf4()) : 0;
    int64_t sum = 0;
    for (const auto& [k, v] : mem.items()) sum += v.get<int64_t>();
    MEMTRAIN_ASSIGN_OR_RETURN(trainer::MemoryPlan plan, trainer::plan_memory(cfg, 1, 0));
    std::printf("%-6s %10.0f %10s %10s %10s %10s %10s %12s %10s   (measured parameters %s MiB)\n", r.name,
                run.median_step_ms, mib(base).c_str(), mib(trained).c_str(),
                mib(mem["gradients"].get<int64_t>()).c_str(), mib(mem["optimizer_state"].get<int64_t>()).c_str(),
                mib(mem["activations"].get<int64_t>()).c_str(), mib(sum).c_str(), mib(plan.total).c_str(),
                mib(mem["parameters"].get<int64_t>()).c_str());
  }
  std::filesystem::remove_all(dir);
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> sets;
  int steps = 4;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--set" && i + 1 < argc) {
      sets.push_back(argv[++i]);
    } else if (a == "--steps" && i + 1 < argc) {
      steps = std::max(2, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--steps N] [--set section.key=value ...]\n", argv[0]);
      return 2;
    }
  }
  const absl::Status s = run(steps, sets);
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
