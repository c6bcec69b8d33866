// Fault injection: a real training job (the memtrain binary) is killed with SIGKILL at 20 fault points chosen at
// random from a printed seed (MEMTRAIN_FAULT_SEED overrides it), including inside every atomic save (the data
// shards, config.toml, model.safetensors), between the two data shards and around each metrics line. After each
// kill the test checks what is on disk — every file under its final name complete and valid, metrics.jsonl holding
// exactly the lines logged before the kill, bit for bit — and then restarts the same command in the same directory:
// it must exit 0 and reproduce the uninterrupted run's loss curve and weights bit for bit.
//
// Kills during checkpoint saves and restarts with train.resume = "auto" are covered by checkpoint_kill_test.cc
// (this job runs without checkpoints, so a restart here starts over).
// The snapshot issue extends this with kills while an in-memory snapshot is being taken.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "checkpoint/safetensors.h"
#include "data/token_shard.h"
#include "tests/integration/cli.h"
#include "trainer/config.h"

namespace memtrain {
namespace {
namespace fs = std::filesystem;

constexpr int kKillPoints = 20;
constexpr uint64_t kDefaultSeed = 8;

struct JobExit {
  bool killed = false;  // by SIGKILL
  int exit_code = -1;   // when it exited
  std::string out, err;
};

// Runs `memtrain ARGS` from the source root with MEMTRAIN_FAULT=fault (unset when empty).
JobExit run_job(const std::string& scratch, const std::string& args, const std::string& fault) {
  const std::string out = scratch + "/job.out", err = scratch + "/job.err";
  const std::string env = fault.empty() ? "unset MEMTRAIN_FAULT; " : absl::StrCat("MEMTRAIN_FAULT='", fault, "' ");
  // `exec` so that the status is the job's own; a shell that forks anyway reports a kill as exit 128 + 9.
  const std::string cmd = absl::StrCat("cd '", MEMTRAIN_SOURCE_DIR, "' && ", env, "exec '", MEMTRAIN_BINARY_DIR,
                                       "/memtrain' ", args, " >'", out, "' 2>'", err, "'");
  const int status = std::system(cmd.c_str());
  JobExit r;
  r.killed = (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ||
             (WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGKILL);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  r.out = testing::slurp(out);
  r.err = testing::slurp(err);
  return r;
}

std::string job_args(const std::string& text, const std::string& out_dir) {
  std::string args = "train configs/default.toml";
  for (const std::string& set :
       {"data.text=" + text, std::string("model.n_layer=1"), std::string("model.n_embd=32"),
        std::string("model.block_size=32"), std::string("train.batch_size=4"), std::string("train.max_steps=12"),
        std::string("train.log_interval=1"), std::string("train.eval_interval=5"), std::string("train.eval_batches=2"),
        std::string("train.threads=1"), std::string("output.samples=0"), "output.dir=" + out_dir}) {
    absl::StrAppend(&args, " --set '", set, "'");
  }
  return args;
}

// metrics.jsonl as one string per line holding its deterministic fields in hex floats (exact): "step 3 loss
// 0x1.6403p+2 lr ... grad_norm ..." or "step 5 val_loss ...". Timings differ between runs and are left out.
absl::StatusOr<std::vector<std::string>> metrics_records(const std::string& text) {
  if (!text.empty() && text.back() != '\n') return absl::DataLossError("metrics.jsonl ends in a torn line");
  std::vector<std::string> records;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    auto j = nlohmann::json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step")) {
      return absl::DataLossError(absl::StrCat("metrics.jsonl: not a complete record: ", line));
    }
    std::string r = absl::StrCat("step ", j["step"].get<int64_t>());
    for (const char* key : {"loss", "lr", "grad_norm", "val_loss"}) {
      if (j.contains(key)) absl::StrAppend(&r, " ", key, " ", absl::StrFormat("%a", j[key].get<double>()));
    }
    records.push_back(r);
  }
  return records;
}

// Every regular file under `dir`, by path relative to it, with its bytes.
std::map<std::string, std::string> read_tree(const std::string& dir) {
  std::map<std::string, std::string> files;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file()) files[fs::relative(it->path(), dir).string()] = testing::slurp(it->path().string());
  }
  return files;
}

// The (point, hit) events of a MEMTRAIN_FAULT=count run, in the order they happened.
struct Event {
  std::string point;
  int64_t hit = 0;
  std::string label() const { return absl::StrCat(point, ":", hit); }
};
std::vector<Event> parse_events(const std::string& err) {
  std::vector<Event> events;
  for (absl::string_view line : absl::StrSplit(err, '\n')) {
    if (!absl::ConsumePrefix(&line, "fault point: ")) continue;
    std::vector<absl::string_view> parts = absl::StrSplit(line, " #");
    Event e;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &e.hit)) continue;
    e.point = std::string(parts[0]);
    events.push_back(e);
  }
  return events;
}

// One random hit of every point the run passes (so every save and the metrics writer are in), then the rest
// uniformly from the remaining events; returned as indices into `events`, in the order the run reaches them.
// std::mt19937_64's output is fixed by the standard, so a seed names the same choice on every platform.
std::vector<size_t> choose_kill_points(const std::vector<Event>& events, uint64_t seed, int n) {
  std::mt19937_64 rng(seed);
  std::map<std::string, std::vector<size_t>> by_point;
  for (size_t i = 0; i < events.size(); ++i) by_point[events[i].point].push_back(i);
  std::vector<size_t> points_first, rest;
  for (const auto& [point, idx] : by_point) points_first.push_back(idx[rng() % idx.size()]);
  // More points than kills: a random subset of the points, one hit each.
  while (static_cast<int>(points_first.size()) > n) points_first.erase(points_first.begin() + rng() % points_first.size());
  std::vector<bool> taken(events.size(), false);
  for (size_t i : points_first) taken[i] = true;
  for (size_t i = 0; i < events.size(); ++i) {
    if (!taken[i]) rest.push_back(i);
  }
  std::vector<size_t> chosen = points_first;
  while (static_cast<int>(chosen.size()) < n && !rest.empty()) {
    const size_t k = rng() % rest.size();
    chosen.push_back(rest[k]);
    rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(k));
  }
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

// The outputs of the uninterrupted run: file bytes and metrics records.
struct Reference {
  std::map<std::string, std::string> files;  // relative path -> bytes; metrics.jsonl included
  std::vector<std::string> metrics;
};

// What a file under its final name must be: readable by memtrain's own reader and equal to the reference's bytes
// (the job is deterministic and, with the same output.dir, so is every byte of its outputs but the timings in
// metrics.jsonl). Returns the problems found.
std::vector<std::string> check_output_file(const std::string& dir, const std::string& rel, const std::string& bytes,
                                           const Reference& ref) {
  std::vector<std::string> problems;
  const std::string path = dir + "/" + rel;
  auto it = ref.files.find(rel);
  if (it == ref.files.end()) return {absl::StrCat(rel, ": not an output of the uninterrupted run")};
  if (absl::EndsWith(rel, ".bin")) {
    if (auto shard = data::TokenShard::open(path); !shard.ok()) problems.push_back(shard.status().ToString());
  } else if (absl::EndsWith(rel, ".safetensors")) {
    if (auto st = checkpoint::read_safetensors(path, MemCategory::kWorkspace); !st.ok()) {
      problems.push_back(st.status().ToString());
    }
  } else if (rel == "config.toml") {
    if (auto cfg = trainer::load_config(path, {}); !cfg.ok()) problems.push_back(cfg.status().ToString());
  }
  if (bytes != it->second) {
    problems.push_back(absl::StrCat(rel, ": ", bytes.size(), " bytes differ from the uninterrupted run's (",
                                    it->second.size(), " bytes)"));
  }
  return problems;
}

// metrics.jsonl: only complete lines, equal bit for bit to the reference's first lines; `allowed` lists the line
// counts it may hold.
std::vector<std::string> check_metrics(const std::string& text, const Reference& ref, std::vector<size_t> allowed) {
  auto records = metrics_records(text);
  if (!records.ok()) return {records.status().ToString()};
  std::vector<std::string> problems;
  if (std::find(allowed.begin(), allowed.end(), records->size()) == allowed.end()) {
    problems.push_back(absl::StrCat("metrics.jsonl holds ", records->size(), " lines, expected ",
                                    absl::StrJoin(allowed, " or ")));
  }
  for (size_t i = 0; i < records->size() && i < ref.metrics.size(); ++i) {
    if ((*records)[i] != ref.metrics[i]) {
      problems.push_back(absl::StrCat("metrics.jsonl line ", i + 1, ": '", (*records)[i],
                                      "' but the uninterrupted run logged '", ref.metrics[i], "'"));
      break;
    }
  }
  return problems;
}

// The state right after a kill at events[kill]. `over_old_run`: the directory held a complete earlier run (the
// same bytes as the reference) when the job started, so every output may also still be that earlier file.
std::vector<std::string> check_after_kill(const std::string& dir, const std::vector<Event>& events, size_t kill,
                                          bool over_old_run, const Reference& ref) {
  // Derived from the order of events: which atomic writes had renamed their file, whether one was in flight,
  // how many metrics lines had been flushed.
  size_t renamed = 0, lines = 0;
  bool in_flight = false;
  for (size_t i = 0; i <= kill; ++i) {
    const std::string& p = events[i].point;
    if (p == "file_io.after_open_tmp") in_flight = true;
    if (p == "file_io.after_rename") {
      in_flight = false;
      ++renamed;
    }
    if (p == "metrics.after_line") ++lines;
  }
  std::vector<std::string> problems;
  size_t finals = 0, tmps = 0;
  bool saw_metrics = false;
  for (const auto& [rel, bytes] : read_tree(dir)) {
    if (absl::EndsWith(rel, ".tmp")) {
      ++tmps;  // a save cut short: tolerated, and it must not be taken for the output (checked after restart)
      continue;
    }
    if (rel == "metrics.jsonl") {
      saw_metrics = true;
      std::vector<size_t> allowed = {lines};
      if (over_old_run) allowed.push_back(ref.metrics.size());  // not yet reopened (truncated) by this run
      for (std::string& p : check_metrics(bytes, ref, allowed)) problems.push_back(std::move(p));
      continue;
    }
    ++finals;
    for (std::string& p : check_output_file(dir, rel, bytes, ref)) problems.push_back(std::move(p));
  }
  if (!saw_metrics && lines > 0) problems.push_back(absl::StrCat("metrics.jsonl is missing; ", lines, " lines were logged"));
  const size_t expected_finals = over_old_run ? ref.files.size() - 1 : renamed;
  if (finals != expected_finals) {
    problems.push_back(absl::StrCat(finals, " files under their final names, expected ", expected_finals, " (",
                                    renamed, " atomic writes had renamed)"));
  }
  if (tmps != (in_flight ? 1u : 0u)) {
    problems.push_back(absl::StrCat(tmps, " *.tmp files, expected ", in_flight ? 1 : 0));
  }
  return problems;
}

// After a clean run: exactly the reference's files, byte for byte (metrics: its deterministic fields).
std::vector<std::string> check_complete(const std::string& dir, const Reference& ref) {
  std::vector<std::string> problems;
  const std::map<std::string, std::string> files = read_tree(dir);
  for (const auto& [rel, bytes] : files) {
    if (rel == "metrics.jsonl") {
      for (std::string& p : check_metrics(bytes, ref, {ref.metrics.size()})) problems.push_back(std::move(p));
    } else {
      for (std::string& p : check_output_file(dir, rel, bytes, ref)) problems.push_back(std::move(p));
    }
  }
  for (const auto& [rel, bytes] : ref.files) {
    if (!files.count(rel)) problems.push_back(absl::StrCat(rel, ": missing"));
  }
  return problems;
}

// The checks have teeth: a torn metrics line, a truncated weights file, a flipped byte in a shard, a stray file and
// a directory further along than the kill point allows are all reported.
void expect_checks_catch_damage(const std::string& scratch, const std::string& reference_dir, const Reference& ref,
                                const std::vector<Event>& events) {
  const std::string bad = scratch + "/damaged";
  fs::remove_all(bad);
  fs::copy(reference_dir, bad, fs::copy_options::recursive);
  std::ofstream(bad + "/metrics.jsonl", std::ios::app) << "{\"step\":13,\"lo";
  fs::resize_file(bad + "/model.safetensors", fs::file_size(bad + "/model.safetensors") - 1);
  {
    std::fstream f(bad + "/data/val.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-1, std::ios::end);
    f.put('\x7f');
  }
  std::ofstream(bad + "/stray.bin") << "x";
  const std::string problems = absl::StrJoin(check_complete(bad, ref), "\n");
  for (const char* what : {"torn line", "model.safetensors", "val.bin", "stray.bin"}) {
    EXPECT_TRUE(absl::StrContains(problems, what)) << "damage to " << what << " went unnoticed:\n" << problems;
  }
  // A complete run is not what a kill at the first metrics line may leave in a fresh directory.
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].point != "metrics.after_line") continue;
    EXPECT_FALSE(check_after_kill(reference_dir, events, i, /*over_old_run=*/false, ref).empty());
    break;
  }
  fs::remove_all(bad);
}

uint64_t seed_from_environment() {
  uint64_t seed = kDefaultSeed;
  if (const char* env = std::getenv("MEMTRAIN_FAULT_SEED"); env != nullptr && *env != '\0') {
    EXPECT_TRUE(absl::SimpleAtoi(env, &seed)) << "MEMTRAIN_FAULT_SEED=" << env << " is not an unsigned integer";
  }
  return seed;
}

TEST(FaultInjection, TrainingJobKilledAtTwentyRandomPointsLosesNothingAndRestartsBitForBit) {
  const uint64_t seed = seed_from_environment();
  std::printf("fault injection seed: %llu (MEMTRAIN_FAULT_SEED=N to choose other kill points)\n",
              static_cast<unsigned long long>(seed));
  const std::string scratch = ::testing::TempDir() + "memtrain_fault_" + std::to_string(getpid());
  fs::remove_all(scratch);
  fs::create_directories(scratch);
  const std::string text = scratch + "/text.txt";
  {
    std::FILE* f = std::fopen(text.c_str(), "w");
    ASSERT_NE(f, nullptr);
    for (int i = 0; i < 400; ++i) std::fprintf(f, "line %d: the quick brown fox %d jumps.\n", i, i * 7919 % 1000);
    std::fclose(f);
  }
  // One output.dir for every run, so that config.toml (which records it) is byte-comparable too.
  const std::string dir = scratch + "/run", reference_dir = scratch + "/reference";
  const std::string args = job_args(text, dir);

  // The uninterrupted run.
  JobExit r = run_job(scratch, args, "");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Reference ref;
  ref.files = read_tree(dir);
  for (const char* rel : {"config.toml", "metrics.jsonl", "data/train.bin", "data/val.bin", "model.safetensors"}) {
    ASSERT_TRUE(ref.files.count(rel)) << rel << " missing after the uninterrupted run";
  }
  ASSERT_EQ(ref.files.size(), 5u) << "unexpected outputs: update Reference and check_after_kill";
  auto records = metrics_records(ref.files["metrics.jsonl"]);
  ASSERT_TRUE(records.ok()) << records.status();
  ref.metrics = *records;
  ASSERT_EQ(ref.metrics.size(), 15u);  // 12 steps + evals at 5 and 10 + the final eval
  fs::rename(dir, reference_dir);

  // The fault points the run passes, in order; MEMTRAIN_FAULT=count must not change the outputs.
  r = run_job(scratch, args, "count");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<Event> events = parse_events(r.err);
  for (const std::string& p : check_complete(dir, ref)) ADD_FAILURE() << "count run: " << p;
  std::map<std::string, int64_t> hits;
  for (const Event& e : events) ASSERT_EQ(e.hit, ++hits[e.point]) << "hits of " << e.point << " out of order";
  for (const char* point : {"file_io.after_open_tmp", "file_io.after_write", "file_io.after_fsync",
                            "file_io.after_rename", "file_io.after_dir_fsync", "prepare.between_shards",
                            "metrics.before_line", "metrics.after_line", "train.step", "train.before_save_weights"}) {
    EXPECT_TRUE(hits.count(point)) << point << " never reached";
  }
  std::printf("the run passes %zu fault points %zu times:", hits.size(), events.size());
  for (const auto& [point, n] : hits) std::printf(" %s x%lld", point.c_str(), static_cast<long long>(n));
  std::printf("\n");
  expect_checks_catch_damage(scratch, reference_dir, ref, events);

  const std::vector<size_t> kills = choose_kill_points(events, seed, kKillPoints);
  ASSERT_EQ(kills.size(), static_cast<size_t>(kKillPoints));
  int survived = 0;
  for (size_t n = 0; n < kills.size(); ++n) {
    const Event& e = events[kills[n]];
    // Every other kill lands in a directory that holds a complete earlier run, the rest in a fresh one.
    const bool over_old_run = n % 2 == 1;
    fs::remove_all(dir);
    if (over_old_run) fs::copy(reference_dir, dir, fs::copy_options::recursive);
    std::vector<std::string> problems;
    JobExit killed = run_job(scratch, args, e.label());
    if (!killed.killed) {
      problems.push_back(absl::StrCat("not killed (exit ", killed.exit_code, "): ", killed.err));
    } else if (!absl::StrContains(killed.err, absl::StrCat("SIGKILL at ", e.point, " (hit ", e.hit, ")"))) {
      problems.push_back(absl::StrCat("killed elsewhere: ", killed.err));
    } else {
      for (std::string& p : check_after_kill(dir, events, kills[n], over_old_run, ref)) problems.push_back(std::move(p));
    }
    // Restart: the same command, no fault, the same directory (with whatever the kill left in it).
    JobExit restart = run_job(scratch, args, "");
    if (restart.exit_code != 0) {
      problems.push_back(absl::StrCat("restart exited ", restart.exit_code, ": ", restart.err));
    } else {
      for (std::string& p : check_complete(dir, ref)) problems.push_back("after restart: " + p);
    }
    std::printf("kill %2zu/%d at %-30s (event %3zu of %zu, %s): %s\n", n + 1, kKillPoints, e.label().c_str(),
                kills[n] + 1, events.size(), over_old_run ? "over an old run" : "fresh dir",
                problems.empty() ? "survived" : "LOST");
    for (const std::string& p : problems) ADD_FAILURE() << "kill at " << e.label() << ": " << p;
    survived += problems.empty() ? 1 : 0;
  }
  std::printf("kill points survived: %d/%d (seed %llu)\n", survived, kKillPoints, static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  EXPECT_EQ(survived, kKillPoints);
  if (!HasFailure()) fs::remove_all(scratch);
}

}  // namespace
}  // namespace memtrain
