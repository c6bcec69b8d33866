// The `memtrain` binary: parses the subcommand and its flags, runs it, and maps errors to exit codes (2: bad
// config or input, 1: failure at run time, printing "error: ..." on stderr; 3: `train` stopped by SIGTERM or
// SIGUSR1 after saving a checkpoint, trainer/stop_signal.h).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "data/prepare.h"
#include "parallel/local_communicator.h"
#include "parallel/world.h"
#include "trainer/activation_planner.h"
#include "trainer/config.h"
#include "trainer/hf_convert.h"
#include "trainer/peft_adapter.h"
#include "trainer/plan.h"
#include "trainer/plot.h"
#include "trainer/session.h"
#include "trainer/snapshot_keeper.h"
#include "trainer/stop_signal.h"
#include "trainer/train_loop.h"

namespace memtrain::trainer {
namespace {

constexpr char kUsage[] =
    "usage: memtrain <command> [args]\n"
    "  train   CONFIG [--set section.key=value ...]   train as the config says; outputs go to output.dir\n"
    "  eval    CONFIG [--set ...] [--weights FILE]    validation loss of saved weights (default output.dir)\n"
    "  sample  CONFIG [--set ...] [--weights FILE]    print output.samples generated texts\n"
    "  plan    CONFIG [--set ...] [--json] [--world-size N]\n"
    "                                                 predicted peak bytes per rank by category, and whether they\n"
    "                                                 fit; N processes (default: the parallel.* product, or 1)\n"
    "  prepare --out DIR [--val-fraction F] [--tokenizer T] INPUT...\n"
    "                                                 tokenize text files or directories into DIR/{train,val}.bin;\n"
    "                                                 T: byte (default) or a Hugging Face tokenizer (data.tokenizer)\n"
    "  convert --from-hf HF_DIR --out DIR             a Hugging Face GPT-2 or LLaMA directory (config.json +\n"
    "                                                 safetensors) into a checkpoint in DIR/checkpoints, which a\n"
    "                                                 run with output.dir = DIR and train.resume = \"auto\" starts from\n"
    "  convert --to-hf CHECKPOINT --out HF_DIR [--dtype f32|bf16|f16] [--max-shard-mb N]\n"
    "                                                 a checkpoint (file, checkpoints dir or output.dir) into a\n"
    "                                                 Hugging Face directory; shards above N MB (default 5000)\n"
    "  convert --merge-adapter ADAPTER_DIR [--base HF_DIR] [--nf4-base] --out HF_DIR [--dtype ...] [--max-shard-mb N]\n"
    "                                                 a PEFT LoRA adapter (a LoRA run's output.dir/adapter) merged\n"
    "                                                 into its base (default: the adapter's base_model_name_or_path)\n"
    "                                                 as a Hugging Face directory; --nf4-base: into the base's\n"
    "                                                 projections as QLoRA's NF4 leaves them (the model a QLoRA run\n"
    "                                                 trained; QuAILoRA's adapters cancel the NF4 error, so need it)\n"
    "  keeper  CONFIG [--set ...] [--node N] [--stop] the snapshot keeper of the config's job on this node (or\n"
    "                                                 simulated node N): holds the in-memory snapshots until the job\n"
    "                                                 is over; the trainer starts one when none runs. --stop: frees\n"
    "                                                 them and ends the keeper\n"
    "  keeper  --socket PATH [--idle-timeout S] [--stop]\n"
    "                                                 the same at an explicit socket\n"
    "  plot    RUN_DIR [--out FILE] [--width W] [--height H]\n"
    "                                                 the loss and throughput curves of RUN_DIR/metrics.jsonl as a\n"
    "                                                 PNG (default RUN_DIR/metrics.png, 1000 x 700 pixels)\n"
    "  help                                           this text\n";

struct Args {
  std::string config;
  std::vector<std::string> overrides;
  std::string weights;
  std::string out;
  double val_fraction = 0.1;
  bool json = false;
  int world_size = 0;  // plan: 0 = from the config
  std::string from_hf, to_hf, merge_adapter, base, dtype;  // convert
  bool nf4_base = false;                                    // convert --merge-adapter
  std::string tokenizer = "byte";     // prepare
  int64_t max_shard_mb = 5000;
  std::vector<std::string> inputs;
  std::string socket;          // keeper
  int node = -1;               // keeper: a simulated node (snapshot.ranks_per_node)
  double idle_timeout = -1;    // keeper: -1 = snapshot.keeper_timeout_s
  bool stop = false;           // keeper
  int width = 1000, height = 700;  // plot
};

absl::StatusOr<Args> parse_args(const std::string& command, int argc, char** argv) {
  Args a;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* flag) -> absl::StatusOr<std::string> {
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(flag, ": needs a value"));
      return std::string(argv[++i]);
    };
    if (arg == "--set") {
      MEMTRAIN_ASSIGN_OR_RETURN(std::string v, value("--set"));
      a.overrides.push_back(v);
    } else if (arg.rfind("--set=", 0) == 0) {
      a.overrides.push_back(arg.substr(6));
    } else if (arg == "--weights" && command != "prepare") {
      MEMTRAIN_ASSIGN_OR_RETURN(a.weights, value("--weights"));
    } else if (arg == "--json" && command == "plan") {
      a.json = true;
    } else if (arg == "--world-size" && command == "plan") {
      MEMTRAIN_ASSIGN_OR_RETURN(std::string v, value("--world-size"));
      if (!absl::SimpleAtoi(v, &a.world_size) || a.world_size < 1)
        return absl::InvalidArgumentError(absl::StrCat("--world-size: not a positive integer: '", v, "'"));
    } else if (arg == "--from-hf" && command == "convert") {
      MEMTRAIN_ASSIGN_OR_RETURN(a.from_hf, value("--from-hf"));
    } else if (arg == "--to-hf" && command == "convert") {
      MEMTRAIN_ASSIGN_OR_RETURN(a.to_hf, value("--to-hf"));
    } else if (arg == "--merge-adapter" && command == "convert") {
      MEMTRAIN_ASSIGN_OR_RETURN(a.merge_adapter, value("--merge-adapter"));
    } else if (arg == "--base" && command == "convert") {
      MEMTRAIN_ASSIGN_OR_RETURN(a.base, value("--base"));
    } else if (arg == "--nf4-base" && command == "convert") {
      a.nf4_base = true;
    } else if (arg == "--dtype" && command == "convert") {
      MEMTRAIN_ASSIGN_OR_RETURN(a.dtype, value("--dtype"));
    } else if (arg == "--max-shard-mb" && command == "convert") {
      MEMTRAIN_ASSIGN_OR_RETURN(std::string v, value("--max-shard-mb"));
      if (!absl::SimpleAtoi(v, &a.max_shard_mb) || a.max_shard_mb < 1)
        return absl::InvalidArgumentError(absl::StrCat("--max-shard-mb: not a positive integer: '", v, "'"));
    } else if ((arg == "--width" || arg == "--height") && command == "plot") {
      MEMTRAIN_ASSIGN_OR_RETURN(std::string v, value(arg.c_str()));
      if (!absl::SimpleAtoi(v, arg == "--width" ? &a.width : &a.height))
        return absl::InvalidArgumentError(absl::StrCat(arg, ": not an integer: '", v, "'"));
    } else if (arg == "--out" && (command == "prepare" || command == "convert" || command == "plot")) {
      MEMTRAIN_ASSIGN_OR_RETURN(a.out, value("--out"));
    } else if (arg == "--tokenizer" && command == "prepare") {
      MEMTRAIN_ASSIGN_OR_RETURN(a.tokenizer, value("--tokenizer"));
    } else if (arg == "--val-fraction" && command == "prepare") {
      MEMTRAIN_ASSIGN_OR_RETURN(std::string v, value("--val-fraction"));
      if (!absl::SimpleAtod(v, &a.val_fraction))
        return absl::InvalidArgumentError(absl::StrCat("--val-fraction: not a number: '", v, "'"));
    } else if (arg == "--socket" && command == "keeper") {
      MEMTRAIN_ASSIGN_OR_RETURN(a.socket, value("--socket"));
    } else if (arg == "--node" && command == "keeper") {
      MEMTRAIN_ASSIGN_OR_RETURN(std::string v, value("--node"));
      if (!absl::SimpleAtoi(v, &a.node) || a.node < 0)
        return absl::InvalidArgumentError(absl::StrCat("--node: not a node number: '", v, "'"));
    } else if (arg == "--idle-timeout" && command == "keeper") {
      MEMTRAIN_ASSIGN_OR_RETURN(std::string v, value("--idle-timeout"));
      if (!absl::SimpleAtod(v, &a.idle_timeout) || a.idle_timeout <= 0)
        return absl::InvalidArgumentError(absl::StrCat("--idle-timeout: not a positive number: '", v, "'"));
    } else if (arg == "--stop" && command == "keeper") {
      a.stop = true;
    } else if (arg.rfind("--", 0) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(arg, ": unknown flag for '", command, "'\n", kUsage));
    } else if (command == "prepare") {
      a.inputs.push_back(arg);
    } else if (a.config.empty()) {
      a.config = arg;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(arg, ": unexpected argument (one CONFIG only)"));
    }
  }
  if (command == "convert") {
    if (!a.config.empty()) return absl::InvalidArgumentError(absl::StrCat(a.config, ": convert takes no CONFIG"));
    const int modes = !a.from_hf.empty() + !a.to_hf.empty() + !a.merge_adapter.empty();
    if (modes != 1 || a.out.empty())
      return absl::InvalidArgumentError("convert: needs --out DIR and one of --from-hf HF_DIR, --to-hf CHECKPOINT, "
                                        "--merge-adapter ADAPTER_DIR");
    if ((!a.base.empty() || a.nf4_base) && a.merge_adapter.empty())
      return absl::InvalidArgumentError("convert: --base and --nf4-base are for --merge-adapter");
    if (!a.from_hf.empty() && (!a.dtype.empty() || a.max_shard_mb != 5000))
      return absl::InvalidArgumentError("convert --from-hf: --dtype and --max-shard-mb are for --to-hf");
    return a;
  }
  if (command == "keeper" && a.config.empty() == a.socket.empty())
    return absl::InvalidArgumentError("keeper: needs a CONFIG or --socket PATH (one of them)");
  if (command == "keeper" && !a.socket.empty() && (a.node >= 0 || !a.overrides.empty()))
    return absl::InvalidArgumentError("keeper: --node and --set go with a CONFIG, not --socket");
  if (command == "keeper") return a;
  if (command == "plot" && a.config.empty()) return absl::InvalidArgumentError("plot: needs a RUN_DIR (a run's output.dir)");
  if (command == "plot" && !a.overrides.empty()) return absl::InvalidArgumentError("plot: takes no --set");
  if (command != "prepare" && a.config.empty()) return absl::InvalidArgumentError(absl::StrCat(command, ": needs a CONFIG file"));
  if (command == "prepare" && (a.out.empty() || a.inputs.empty()))
    return absl::InvalidArgumentError("prepare: needs --out DIR and at least one INPUT");
  return a;
}

absl::StatusOr<std::unique_ptr<ModelBundle>> load_trained(Config cfg, const Args& args) {
  if (cfg.lora.changes_base()) cfg.lora = model::LoraSpec{};  // PeriodicLoRA and LoRA-GA save the merged model
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<ModelBundle> bundle, build_model(cfg));
  if (cfg.lora.enabled()) {  // the base from model.from_hf (or the seed), the adapter from its directory
    const std::string dir = args.weights.empty() ? adapter_path(cfg) : args.weights;
    MEMTRAIN_ASSIGN_OR_RETURN(PeftAdapter adapter, read_peft_adapter(dir));
    MEMTRAIN_RETURN_IF_ERROR(copy_adapter_tensors(adapter, dir, bundle->params));
    return bundle;
  }
  MEMTRAIN_RETURN_IF_ERROR(load_weights(*bundle, args.weights.empty() ? weights_path(cfg) : args.weights));
  return bundle;
}

absl::Status convert(const Args& args) {
  if (!args.from_hf.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(ConvertSummary s, import_hf(args.from_hf, args.out));
    std::printf("converted %lld tensors of %s (%lld buffers or tied copies skipped) into %s/checkpoints\n"
                "train from it with output.dir = \"%s\", train.resume = \"auto\" and this [model]:\n",
                static_cast<long long>(s.tensors), args.from_hf.c_str(), static_cast<long long>(s.skipped),
                args.out.c_str(), args.out.c_str());
    Config cfg;
    cfg.model = s.model;
    const std::string toml = dump_config(cfg);
    const size_t end = toml.find("\n[", toml.find("[model]"));
    std::fputs(toml.substr(toml.find("[model]"), end == std::string::npos ? std::string::npos : end + 1 - toml.find("[model]")).c_str(), stdout);
    return absl::OkStatus();
  }
  std::optional<DType> dtype;
  if (!args.dtype.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(DType dt, dtype_from_name(args.dtype));
    dtype = dt;
  }
  if (!args.merge_adapter.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(ConvertSummary s, merge_peft_adapter(args.merge_adapter, args.base, args.out, dtype,
                                                                   args.max_shard_mb << 20, args.nf4_base));
    std::printf("merged the adapter %s into %lld tensors of its base model in %s\n", args.merge_adapter.c_str(),
                static_cast<long long>(s.tensors), s.written.c_str());
    return absl::OkStatus();
  }
  MEMTRAIN_ASSIGN_OR_RETURN(ConvertSummary s, export_hf(args.to_hf, args.out, dtype, args.max_shard_mb << 20));
  std::printf("exported %lld tensors of %s into %s\n", static_cast<long long>(s.tensors), args.to_hf.c_str(),
              s.written.c_str());
  return absl::OkStatus();
}

// `memtrain keeper`: runs (or stops) the snapshot keeper of a job on this node.
absl::Status keeper(const Args& args) {
  std::string socket = args.socket;
  double idle_timeout = args.idle_timeout > 0 ? args.idle_timeout : SnapshotConfig().keeper_timeout_s;
  if (socket.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(Config cfg, load_config(args.config, args.overrides));
    if (cfg.snapshot.interval == 0) {  // launch scripts start keepers whatever the config says
      std::printf("memtrain keeper: snapshots are off (snapshot.interval = 0), no keeper needed\n");
      return absl::OkStatus();
    }
    if (cfg.snapshot.ranks_per_node > 0 && args.node < 0)
      return absl::InvalidArgumentError("keeper: snapshot.ranks_per_node simulates nodes; say which with --node N");
    if (cfg.snapshot.ranks_per_node == 0 && args.node >= 0)
      return absl::InvalidArgumentError("keeper: --node is for simulated nodes (snapshot.ranks_per_node > 0)");
    const std::string node = args.node >= 0 ? absl::StrCat("n", args.node) : snapshot_node(cfg.snapshot, 0);
    socket = keeper_socket(snapshot_job(cfg), node);
    if (args.idle_timeout <= 0) idle_timeout = static_cast<double>(cfg.snapshot.keeper_timeout_s);
  }
  if (args.stop) {
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<checkpoint::KeeperClient> client,
                              checkpoint::KeeperClient::connect(socket));
    return client->stop();
  }
  return checkpoint::run_keeper(socket, idle_timeout, [&socket] {
    std::printf("memtrain keeper: serving %s\n", socket.c_str());  // launch/srun.sh waits for this line
    std::fflush(stdout);
  });
}

int exit_code(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk: return 0;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kPermissionDenied: return 2;
    case absl::StatusCode::kCancelled: return kExitStopped;
    default: return 1;
  }
}

absl::Status run(const std::string& command, const Args& args) {
  if (command == "prepare") {
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<data::Tokenizer> tok, data::load_tokenizer(args.tokenizer));
    MEMTRAIN_ASSIGN_OR_RETURN(data::PrepareStats s,
                              data::prepare_text_dataset(args.inputs, args.val_fraction, args.out, tok.get()));
    std::printf("prepared %lld files: %lld train tokens, %lld val tokens in %s\n", static_cast<long long>(s.files),
                static_cast<long long>(s.train_tokens), static_cast<long long>(s.val_tokens), args.out.c_str());
    return absl::OkStatus();
  }
  if (command == "convert") return convert(args);
  if (command == "keeper") return keeper(args);
  if (command == "plot") {
    MEMTRAIN_ASSIGN_OR_RETURN(std::string path, plot_run(args.config, args.out, args.width, args.height));
    std::printf("wrote %s (%d x %d)\n", path.c_str(), args.width, args.height);
    return absl::OkStatus();
  }
  MEMTRAIN_ASSIGN_OR_RETURN(Config cfg, load_config(args.config, args.overrides));
  MEMTRAIN_ASSIGN_OR_RETURN(parallel::LaunchInfo launch, parallel::detect_launch(std::getenv));
  if (command == "train") {
    install_stop_handlers();
    // A run stopped by a signal, its checkpoint saved, ends with kExitStopped (the train loop said why).
    auto outcome = [](const absl::StatusOr<TrainResult>& r) {
      return r.ok() && r->stop_signal != 0 ? absl::CancelledError("stopped by a signal") : r.status();
    };
    // Without a launcher there is no MPI at all: the mesh is one local rank.
    if (launch.world_size == 1) {
      parallel::LocalCommunicator local("world");
      return outcome(run_training(cfg, local, 1, /*quiet=*/false));
    }
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<parallel::World> world,
                              parallel::World::init(nullptr, nullptr,
                                                    {cfg.parallel.timeout_s, needs_thread_multiple(cfg)}));
    absl::Status status = outcome(run_training(cfg, world->comm(), world->launch().local_size, /*quiet=*/false));
    if (!status.ok() && !absl::IsCancelled(status) && world->size() > 1) {
      // The other ranks may be waiting in a collective this rank will never join: take them down now rather than
      // at their deadline.
      std::fprintf(stderr, "error: rank %d: %s\n", world->rank(), std::string(status.message()).c_str());
      std::fflush(stderr);
      world->abort(exit_code(status));
    }
    return status;
  }
  // Evaluation and sampling run in one process.
  if (launch.world_size > 1 && command != "plan") {
    return absl::FailedPreconditionError(absl::StrCat("'", command, "' runs in one process, but it was launched as ",
                                                      launch.world_size, " processes by ", launch.launcher));
  }
  if (command == "plan") {
    const parallel::ParallelConfig& p = cfg.parallel;
    const int world = args.world_size > 0 ? args.world_size : p.dp > 0 ? static_cast<int>(p.dp * p.tp * p.pp * p.cp) : 1;
    if (wants_auto_policies(cfg)) {
      apply_runtime(cfg);
      MEMTRAIN_ASSIGN_OR_RETURN(Bandwidths bw, probe_bandwidths(cfg));
      MEMTRAIN_ASSIGN_OR_RETURN(PolicyPlan chosen, plan_policies(cfg, world, bw));
      if (!args.json) std::printf("memory.activations = auto: %s\n", describe(chosen).c_str());
      cfg = with_policies(cfg, chosen);
    }
    MEMTRAIN_ASSIGN_OR_RETURN(MemoryPlan plan, plan_memory_of_largest_stage(cfg, world));
    std::fputs(args.json ? (plan_json(plan) + "\n").c_str() : plan_table(cfg, plan).c_str(), stdout);
    return absl::OkStatus();
  }
  apply_runtime(cfg);
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<ModelBundle> bundle, load_trained(cfg, args));
  if (command == "eval") {
    MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<RunData> data, RunData::open(cfg, cfg.train.batch_size));
    MEMTRAIN_ASSIGN_OR_RETURN(double loss, evaluate_loss(*bundle->model, *data, cfg.train.eval_batches));
    std::printf("val_loss %.6f\n", loss);
    return absl::OkStatus();
  }
  return print_samples(cfg, *bundle->model);  // command == "sample"
}

}  // namespace
}  // namespace memtrain::trainer

int main(int argc, char** argv) {
  using namespace memtrain::trainer;
  if (argc < 2 || std::strcmp(argv[1], "help") == 0 || std::strcmp(argv[1], "--help") == 0 ||
      std::strcmp(argv[1], "-h") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  if (command != "train" && command != "eval" && command != "sample" && command != "plan" && command != "prepare" &&
      command != "convert" && command != "keeper" && command != "plot") {
    std::fprintf(stderr, "error: unknown command '%s'\n%s", command.c_str(), kUsage);
    return 2;
  }
  absl::Status status;
  auto args = parse_args(command, argc, argv);
  status = args.ok() ? run(command, *args) : args.status();
  if (!status.ok() && !absl::IsCancelled(status)) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
  }
  return exit_code(status);
}
