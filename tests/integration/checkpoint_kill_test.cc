// A training job that checkpoints every 3 steps, killed with SIGKILL at 12 points (every fault point inside a
// checkpoint save: after the HDF5 file is written, after its rename and directory fsync, after `latest` is
// renamed; and in the middle of steps), then restarted with train.resume = "auto": the restart always finds an
// intact checkpoint (never a half-written one), says which step it resumed from (the newest checkpoint the kill left
// complete), and the whole run ends exactly as the uninterrupted one: every metrics line and the weights file bit
// for bit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "tests/integration/cli.h"

namespace memtrain {
namespace {
namespace fs = std::filesystem;

std::string job_args(const std::string& text, const std::string& dir, bool async) {
  std::string args = absl::StrCat("train configs/default.toml --set train.checkpoint_async=", async ? "true" : "false");
  for (const std::string& set :
       {"data.text=" + text, std::string("model.n_layer=1"), std::string("model.n_embd=32"),
        std::string("model.block_size=32"), std::string("train.batch_size=4"), std::string("train.max_steps=12"),
        std::string("train.log_interval=1"), std::string("train.eval_interval=0"), std::string("train.eval_batches=2"),
        std::string("train.threads=1"), std::string("train.checkpoint_interval=3"),
        std::string("train.keep_checkpoints=2"), std::string("train.resume=auto"), std::string("optim.warmup_steps=2"),
        std::string("output.samples=0"), "output.dir=" + dir}) {
    absl::StrAppend(&args, " --set '", set, "'");
  }
  return args;
}

// metrics.jsonl's deterministic fields, exactly (hex floats), one string per line.
std::vector<std::string> records(const std::string& text) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const auto j = nlohmann::json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.contains("step")) {
      out.push_back(absl::StrCat("torn: ", line));
      continue;
    }
    std::string r = absl::StrCat("step ", j["step"].get<int64_t>());
    for (const char* key : {"loss", "lr", "grad_norm", "val_loss"}) {
      if (j.contains(key)) absl::StrAppend(&r, " ", key, " ", absl::StrFormat("%a", j[key].get<double>()));
    }
    out.push_back(r);
  }
  return out;
}

struct Event {
  std::string point;
  int64_t hit;
};

// Saves written synchronously (12 kills), and in the background (train.checkpoint_async: the save points run on the
// writer thread while training goes on; 7 kills).
class CheckpointKill : public ::testing::TestWithParam<bool> {};

TEST_P(CheckpointKill, EveryRestartResumesFromAnIntactCheckpointAndEndsBitForBit) {
  const bool async = GetParam();
  const std::string scratch = ::testing::TempDir() + "memtrain_ckill_" + std::to_string(getpid());
  fs::remove_all(scratch);
  fs::create_directories(scratch);
  const std::string text = scratch + "/text.txt";
  {
    std::ofstream f(text);
    for (int i = 0; i < 400; ++i) f << "line " << i << ": the quick brown fox " << (i * 7919 % 1000) << " jumps.\n";
  }
  const std::string dir = scratch + "/run";
  // The uninterrupted run, counting the fault points it passes.
  auto ref = testing::run_memtrain(job_args(text, dir, async), scratch, "MEMTRAIN_FAULT=count");
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const std::vector<std::string> want = records(testing::slurp(dir + "/metrics.jsonl"));
  const std::string weights = testing::slurp(dir + "/model.safetensors");
  ASSERT_EQ(want.size(), 13u);  // 12 steps and the final validation
  std::vector<Event> events;
  for (absl::string_view line : absl::StrSplit(ref.err, '\n')) {
    if (!absl::ConsumePrefix(&line, "fault point: ")) continue;
    const std::vector<absl::string_view> parts = absl::StrSplit(line, " #");
    Event e{std::string(parts[0]), 0};
    if (parts.size() == 2 && absl::SimpleAtoi(parts[1], &e.hit)) events.push_back(e);
  }
  // Kill targets: each save's points (the file written, renamed, directory synced, `latest` renamed), and two steps.
  std::vector<Event> kills;
  bool saving = false;  // from the first checkpoint on (the earlier renames are the data shards and config.toml)
  for (const Event& e : events) {
    saving = saving || e.point == "checkpoint.after_write";
    if (saving && (absl::StartsWith(e.point, "checkpoint.") || e.point == "file_io.after_rename" ||
                   e.point == "file_io.after_dir_fsync"))
      kills.push_back(e);
  }
  ASSERT_GE(kills.size(), 10u) << ref.err;
  kills.resize(async ? 6 : 10);
  kills.push_back({"train.step", 5});
  if (!async) kills.push_back({"train.step", 11});
  for (const Event& kill : kills) {
    const std::string where = absl::StrCat(kill.point, ":", kill.hit);
    SCOPED_TRACE(where);
    fs::remove_all(dir);
    auto killed = testing::run_memtrain(job_args(text, dir, async), scratch, "MEMTRAIN_FAULT=" + where);
    ASSERT_EQ(killed.exit_code, 128 + 9) << killed.err;
    // What the kill left: the newest checkpoint under its final name is the step the restart must resume from.
    int64_t newest = 0;
    if (fs::exists(dir + "/checkpoints")) {
      for (const auto& f : fs::directory_iterator(dir + "/checkpoints")) {
        long long step = 0;
        const std::string n = f.path().filename().string();
        if (std::sscanf(n.c_str(), "step_%lld.h5", &step) == 1 && !absl::EndsWith(n, ".tmp")) {
          newest = std::max<int64_t>(newest, step);
        }
      }
    }
    auto restart = testing::run_memtrain(job_args(text, dir, async), scratch);
    ASSERT_EQ(restart.exit_code, 0) << restart.err;
    if (newest > 0) {
      EXPECT_NE(restart.out.find(absl::StrFormat("(step %d)", newest)), std::string::npos) << restart.out;
    }
    EXPECT_EQ(records(testing::slurp(dir + "/metrics.jsonl")), want);
    EXPECT_TRUE(testing::slurp(dir + "/model.safetensors") == weights) << "final weights differ";
  }
  fs::remove_all(scratch);
}

INSTANTIATE_TEST_SUITE_P(Saves, CheckpointKill, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "async" : "sync"; });

}  // namespace
}  // namespace memtrain
