// Full disk: every output memtrain writes (config.toml, metrics.jsonl, model.safetensors, token shards, checkpoints) on a small
// tmpfs that the test mounts and fills. Each case checks the failure contract: a non-OK status or exit code 1 (a
// run-time failure, not bad input), a message naming the file and saying "No space left on device", the previous
// good output intact byte for byte, no leftover .tmp, and — for metrics.jsonl — no torn last line.
//
// Needs root (mount); without it, or where mount fails (a container without CAP_SYS_ADMIN), each case is skipped
// with the reason. Sizes assume tmpfs's 4 KiB pages: a file occupies whole pages, so "fits" and "does not fit" are
// judged in pages and each case checks its own precondition (the previous output fits, the free space is what it
// needs to be) rather than trusting the arithmetic.
#include <gtest/gtest.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"
#include "checkpoint/safetensors.h"
#include "core/file_io.h"
#include "core/status.h"
#include "data/token_shard.h"
#include "tests/integration/cli.h"
#include "trainer/checkpoint_file.h"

namespace memtrain {
namespace {

namespace fs = std::filesystem;
constexpr char kNoSpace[] = "No space left on device";

class FullDisk : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "memtrain_disk_" + std::to_string(getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_ + "/mnt");
    mnt_ = dir_ + "/mnt";
    // Tokens outside the tmpfs (so a run's first write under output.dir is config.toml): 20 000 bytes of text.
    std::string text;
    for (int i = 0; text.size() < 20000; ++i) text += "line " + std::to_string(i * 7919 % 1000) + " of the tiny corpus\n";
    write(dir_ + "/text.txt", text);
    std::vector<int32_t> tokens(text.begin(), text.end());
    fs::create_directories(dir_ + "/data");
    MEMTRAIN_CHECK_OK(data::write_token_shard(dir_ + "/data/train.bin", tokens, 256));
    MEMTRAIN_CHECK_OK(data::write_token_shard(dir_ + "/data/val.bin", tokens, 256));
  }
  void TearDown() override {
    if (mounted_) {
      EXPECT_EQ(std::system(("umount '" + mnt_ + "'").c_str()), 0) << "cannot unmount " << mnt_;
    }
    fs::remove_all(dir_);
  }

  // Mounts a tmpfs of `kib` KiB on mnt_; false (with why_) where this machine does not allow it.
  bool mount_tmpfs(int kib) {
    if (::geteuid() != 0) {
      why_ = "mounting a tmpfs needs root";
      return false;
    }
    const std::string cmd = "mount -t tmpfs -o size=" + std::to_string(kib) + "k tmpfs '" + mnt_ + "' 2>'" + dir_ +
                            "/mount.err'";
    if (std::system(cmd.c_str()) != 0) {
      why_ = "mount -t tmpfs failed: " + testing::slurp(dir_ + "/mount.err");
      return false;
    }
    mounted_ = true;
    return true;
  }
  static uint64_t free_bytes(const std::string& path) {
    struct statvfs s;
    MEMTRAIN_CHECK_MSG(::statvfs(path.c_str(), &s) == 0, "statvfs");
    return static_cast<uint64_t>(s.f_bavail) * s.f_frsize;
  }
  // Fills mnt_ with a filler file until `leave` bytes (or less) are free; ENOSPC while filling is the goal.
  void fill_leaving(uint64_t leave) {
    const uint64_t free = free_bytes(mnt_);
    if (free <= leave) return;
    FILE* f = std::fopen((mnt_ + "/filler").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const std::string block(4096, 'x');
    for (uint64_t left = free - leave; left > 0;) {
      const size_t n = std::min<uint64_t>(left, block.size());
      if (std::fwrite(block.data(), 1, n, f) != n) break;
      left -= n;
    }
    std::fclose(f);
    ASSERT_LE(free_bytes(mnt_), leave + 4096) << "the filler should leave at most a page beyond " << leave;
  }
  static void write(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(f.good()) << path;
  }
  // No file ending in ".tmp" anywhere under mnt_: a failed atomic write removes its temporary.
  void expect_no_tmp() {
    for (const auto& e : fs::recursive_directory_iterator(mnt_))
      EXPECT_NE(e.path().extension(), ".tmp") << "leftover " << e.path();
  }
  // `memtrain train` on the tiny model over dir_/data (outside the tmpfs), output.dir `out`.
  testing::CliResult train(const std::string& out, const std::string& extra = "") {
    return testing::run_memtrain("train configs/default.toml --set data.text=\"\" --set data.dataset=" + dir_ +
                                     "/data --set model.n_layer=1 --set model.n_embd=32 --set train.max_steps=2"
                                     " --set train.eval_batches=2 --set output.samples=0 --set output.dir=" + out +
                                     " " + extra,
                                 dir_);  // cli.out/cli.err go to dir_, off the full tmpfs
  }
  static void expect_no_space(const testing::CliResult& r, const std::string& file) {
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(file), std::string::npos) << "stderr should name " << file << ": " << r.err;
    EXPECT_NE(r.err.find(kNoSpace), std::string::npos) << r.err;
  }

  std::string dir_, mnt_, why_;
  bool mounted_ = false;
};

#define MOUNT_OR_SKIP(kib) \
  if (!mount_tmpfs(kib)) {  \
    GTEST_SKIP() << why_;   \
  }

// (a) The library calls: a previous good file, then a new one that does not fit.
TEST_F(FullDisk, AtomicWriteAndSafetensorsKeepThePreviousFile) {
  MOUNT_OR_SKIP(64);
  const std::string path = mnt_ + "/out.bin";
  const std::string old_bytes(10000, 'o');
  MEMTRAIN_CHECK_OK(write_file_atomically(path, {old_bytes}));
  fill_leaving(8192);  // room for 2 pages; the new file needs 5
  absl::Status st = write_file_atomically(path, {std::string(20000, 'n')});
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_NE(st.message().find("out.bin"), absl::string_view::npos) << st;
  EXPECT_NE(st.message().find(kNoSpace), absl::string_view::npos) << st;
  EXPECT_TRUE(testing::slurp(path) == old_bytes) << "the previous file was damaged";
  expect_no_tmp();

  // write_safetensors on the same full disk, over a previous good safetensors file.
  fs::remove(mnt_ + "/filler");
  const std::string st_path = mnt_ + "/model.safetensors";
  Tensor small = *Tensor::empty({4}, DType::kF32, MemCategory::kWorkspace);
  for (int i = 0; i < 4; ++i) small.f32()[i] = static_cast<float>(i);
  MEMTRAIN_CHECK_OK(checkpoint::write_safetensors(st_path, {{"w", small}}));
  const std::string old_st = testing::slurp(st_path);
  fill_leaving(8192);
  Tensor big = *Tensor::empty({8192}, DType::kF32, MemCategory::kWorkspace);  // 32 KiB: 8 pages
  std::fill(big.f32(), big.f32() + 8192, 1.0f);
  st = checkpoint::write_safetensors(st_path, {{"w", big}});
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_NE(st.message().find("model.safetensors"), absl::string_view::npos) << st;
  EXPECT_NE(st.message().find(kNoSpace), absl::string_view::npos) << st;
  EXPECT_TRUE(testing::slurp(st_path) == old_st) << "the previous weights were damaged";
  EXPECT_TRUE(checkpoint::read_safetensors(st_path, MemCategory::kWorkspace).ok());
  expect_no_tmp();
}

// (b) `memtrain train` whose output.dir holds the previous run's weights, with no room for a second copy.
TEST_F(FullDisk, TrainKeepsPreviousWeights) {
  const std::string good = dir_ + "/good";
  auto r = train(good);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string old_model = testing::slurp(good + "/model.safetensors");
  ASSERT_GT(old_model.size(), 50000u);  // ~100 KB for n_embd=32, n_layer=1: 25 pages
  // Room for the old weights, config.toml and metrics.jsonl, not for the new weights' temporary beside them.
  const int kib = static_cast<int>(old_model.size() * 3 / 2 / 1024);
  MOUNT_OR_SKIP(kib);
  const std::string out = mnt_ + "/run";
  fs::create_directories(out);
  write(out + "/model.safetensors", old_model);
  ASSERT_LT(free_bytes(mnt_), old_model.size()) << "the tmpfs must be too small for a second copy";
  r = train(out);
  expect_no_space(r, "model.safetensors");
  EXPECT_TRUE(testing::slurp(out + "/model.safetensors") == old_model) << "the previous weights were damaged";
  expect_no_tmp();
}

// (c) metrics.jsonl fills the disk: one line per step; every line already written stays complete JSON.
TEST_F(FullDisk, MetricsNeverEndInATornLine) {
  const std::string flags = "--set train.max_steps=40 --set train.log_interval=1 --set train.eval_interval=0"
                            " --set train.batch_size=2 --set model.block_size=32";
  // The pages config.toml takes (it grows with the config keys) and one for metrics.jsonl (~12 lines of ~330 bytes).
  auto r = train(dir_ + "/measure", flags + " --set train.max_steps=1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const uint64_t config_pages = (fs::file_size(dir_ + "/measure/config.toml") + 4095) / 4096;
  MOUNT_OR_SKIP(static_cast<int>(4 * (config_pages + 1)));
  const std::string out = mnt_ + "/run";
  r = train(out, flags);
  expect_no_space(r, "metrics.jsonl");
  const std::string metrics = testing::slurp(out + "/metrics.jsonl");
  ASSERT_FALSE(metrics.empty()) << "the disk should fill after some lines, not before the first";
  EXPECT_EQ(metrics.back(), '\n') << "torn last line: " << metrics.substr(metrics.rfind('\n') + 1);
  int64_t step = 0;
  for (absl::string_view line : absl::StrSplit(metrics, '\n', absl::SkipEmpty())) {
    const auto j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << line;
    EXPECT_EQ(j.value("step", int64_t{-1}), ++step) << line;  // steps 1, 2, ... in order, none lost or repeated
  }
  EXPECT_LT(step, 40) << "the disk never filled";
  std::printf("FullDisk.MetricsNeverEndInATornLine: %lld complete lines before the disk filled\n",
              static_cast<long long>(step));
}

// (d) `memtrain prepare` over previous good shards on a full disk.
TEST_F(FullDisk, PrepareKeepsPreviousShards) {
  MOUNT_OR_SKIP(128);
  const std::string out = mnt_ + "/data";
  fs::create_directories(out);
  fs::copy_file(dir_ + "/data/train.bin", out + "/train.bin");
  fs::copy_file(dir_ + "/data/val.bin", out + "/val.bin");
  const std::string old_train = testing::slurp(out + "/train.bin"), old_val = testing::slurp(out + "/val.bin");
  fill_leaving(0);
  auto r = testing::run_memtrain("prepare --out " + out + " " + dir_ + "/text.txt", dir_);
  expect_no_space(r, "train.bin");
  // Byte comparisons without printing the bytes (shards are tens of KB).
  EXPECT_TRUE(testing::slurp(out + "/train.bin") == old_train) << "the previous train.bin was damaged";
  EXPECT_TRUE(testing::slurp(out + "/val.bin") == old_val) << "the previous val.bin was damaged";
  EXPECT_TRUE(data::TokenShard::open(out + "/train.bin").ok());
  expect_no_tmp();
}

// (e) The resolved config.toml, the first file a run writes under output.dir.
TEST_F(FullDisk, ConfigIsWrittenAtomically) {
  MOUNT_OR_SKIP(16);
  const std::string out = mnt_ + "/run";
  fs::create_directories(out);
  const std::string old_config = "# the previous run's resolved config\n[train]\nmax_steps = 1\n";
  write(out + "/config.toml", old_config);
  fill_leaving(0);
  auto r = train(out);
  expect_no_space(r, "config.toml");
  EXPECT_EQ(testing::slurp(out + "/config.toml"), old_config);
  EXPECT_FALSE(fs::exists(out + "/metrics.jsonl")) << "the run went on after failing to write its config";
  expect_no_tmp();
}

// (f) A checkpoint save that does not fit: the run stops with the error (train.checkpoint_failure = "stop") or warns
// and trains on ("continue"); either way `latest` still names the previous checkpoint, which loads.
TEST_F(FullDisk, ACheckpointThatDoesNotFitKeepsThePreviousOne) {
  const std::string flags = " --set train.checkpoint_interval=2 --set output.save_weights=false";
  auto r = train(dir_ + "/measure", flags);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const uint64_t size = fs::file_size(dir_ + "/measure/checkpoints/step_00000002.h5");
  // Room for one checkpoint, config.toml and metrics.jsonl, not for a second checkpoint beside the first.
  MOUNT_OR_SKIP(static_cast<int>(size * 3 / 2 / 1024 + 24));
  for (const std::string policy : {"stop", "continue"}) {
    SCOPED_TRACE(policy);
    const std::string out = mnt_ + "/" + policy;
    r = train(out, flags + " --set train.max_steps=6 --set train.checkpoint_failure=" + policy);
    if (policy == "stop") {
      EXPECT_EQ(r.exit_code, 1) << r.err;
      EXPECT_NE(r.err.find("step_00000004.h5"), std::string::npos) << r.err;
    } else {
      EXPECT_EQ(r.exit_code, 0) << r.err;
      EXPECT_NE(r.err.find("warning: checkpoint failed"), std::string::npos) << r.err;
      EXPECT_NE(r.err.find("step_00000004.h5"), std::string::npos) << r.err;
      EXPECT_NE(r.err.find("step_00000006.h5"), std::string::npos) << r.err;
    }
    EXPECT_NE(r.err.find("not enough space for the checkpoint"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(kNoSpace), std::string::npos) << r.err;
    EXPECT_EQ(testing::slurp(out + "/checkpoints/latest"), "step_00000002.h5\n");
    auto kept = trainer::read_checkpoint_weights(out);
    EXPECT_TRUE(kept.ok()) << kept.status();
    expect_no_tmp();
    fs::remove_all(out);
  }
}

}  // namespace
}  // namespace memtrain
