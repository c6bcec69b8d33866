// Config loading that succeeds: defaults, the dump/parse round trip, typed --set overrides, files on disk, byte
// sizes, and configs/README.md staying in step with the declared keys. Rejections are in malformed_config_test.cc.
#include "trainer/config.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace memtrain {
namespace {

using trainer::Config;
using trainer::FieldRef;
using trainer::FieldType;

constexpr char kData[] = "[data]\ntext = [\"corpus.txt\"]\n";

// The first key whose values differ, compared by type (doubles bit for bit), or "" when the configs are equal.
// An independent oracle for the round trip: it reads the fields directly, not through the dump.
std::string first_difference(Config a, Config b) {
  const std::vector<FieldRef> fa = trainer::bind_config_fields(a), fb = trainer::bind_config_fields(b);
  for (size_t i = 0; i < fa.size(); ++i) {
    bool same = false;
    switch (fa[i].type) {
      case FieldType::kInt: same = *static_cast<int64_t*>(fa[i].value) == *static_cast<int64_t*>(fb[i].value); break;
      case FieldType::kFloat: {
        const double x = *static_cast<double*>(fa[i].value), y = *static_cast<double*>(fb[i].value);
        same = std::memcmp(&x, &y, sizeof x) == 0;
        break;
      }
      case FieldType::kBool: same = *static_cast<bool*>(fa[i].value) == *static_cast<bool*>(fb[i].value); break;
      case FieldType::kString:
        same = *static_cast<std::string*>(fa[i].value) == *static_cast<std::string*>(fb[i].value);
        break;
      case FieldType::kStringList:
        same = *static_cast<std::vector<std::string>*>(fa[i].value) ==
               *static_cast<std::vector<std::string>*>(fb[i].value);
        break;
      case FieldType::kIntList:
        same = *static_cast<std::vector<int64_t>*>(fa[i].value) == *static_cast<std::vector<int64_t>*>(fb[i].value);
        break;
    }
    if (!same) return fa[i].full_key();
  }
  return "";
}

Config parse_ok(const std::string& text, const std::vector<std::string>& overrides = {}) {
  absl::StatusOr<Config> c = trainer::parse_config(text, "test.toml", overrides);
  EXPECT_TRUE(c.ok()) << c.status() << "\n" << text;
  return c.ok() ? *c : Config{};
}

std::string write_temp(const std::string& name, const std::string& contents) {
  const std::string path = absl::StrCat(testing::TempDir(), "memtrain_config_test_", name);
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

TEST(Config, MissingKeysKeepDefaults) {
  Config c = parse_ok(kData);
  Config defaults;
  defaults.data.text = {"corpus.txt"};
  EXPECT_EQ(first_difference(c, defaults), "");
  EXPECT_EQ(c.train.max_steps, 1000);
  EXPECT_EQ(c.optim.schedule, "cosine");
  EXPECT_DOUBLE_EQ(c.optim.lr, 1e-3);
  EXPECT_EQ(c.memory.budget_bytes(), 0);
}

TEST(Config, FileValuesApply) {
  Config c = parse_ok(std::string(kData) +
                      "[model]\narch = \"llama\"\nn_head = 8\nn_kv_head = 2\nn_embd = 256\n"
                      "[train]\nmax_steps = 1_000_000\nseq_len = 64\n"
                      "[optim]\nlr = 1\nbeta2 = 0.99\ndecay_embeddings = true\n"  // lr: an integer where a float goes
                      "[memory]\nbudget = \"1.5GiB\"\n");
  EXPECT_EQ(c.model.arch, "llama");
  EXPECT_EQ(c.model.kv_heads(), 2);
  EXPECT_EQ(c.train.max_steps, 1000000);
  EXPECT_EQ(c.train.resolved_seq_len(c.model.block_size), 64);
  EXPECT_EQ(c.optim.lr, 1.0);
  EXPECT_EQ(c.optim.beta2, 0.99);
  EXPECT_TRUE(c.optim.decay_embeddings);
  EXPECT_EQ(c.memory.budget_bytes(), (int64_t{3} << 30) / 2);
}

TEST(Config, DottedKeysAndInlineTablesWork) {
  Config c = parse_ok(std::string("train.max_steps = 7\noptim = { lr = 0.5, min_lr = 0.0 }\n") + kData);
  EXPECT_EQ(c.train.max_steps, 7);
  EXPECT_EQ(c.optim.lr, 0.5);
  EXPECT_EQ(c.optim.min_lr, 0.0);
}

TEST(ConfigRoundTrip, DefaultsDumpAndParseBack) {
  Config original;
  original.data.text = {"corpus.txt"};
  const std::string dumped = trainer::dump_config(original);
  for (const FieldRef& f : trainer::bind_config_fields(original))  // every key is written, defaults included
    EXPECT_NE(dumped.find(absl::StrCat("\n", f.key, " = ")), std::string::npos) << f.full_key() << "\n" << dumped;
  EXPECT_EQ(first_difference(parse_ok(dumped), original), "") << dumped;
}

TEST(ConfigRoundTrip, UnusualValuesSurvive) {
  Config original;
  original.data.text = {"a \"quoted\" path.txt", "back\\slash", "ünïcødé ✓", "tab\there", ""};
  original.output.prompt = "line one\nline two\r\n\x01\x1f\x7f 'single' \"double\" \\ end";
  original.output.dir = "runs/x y#not a comment";
  original.optim.lr = 1.0 / 3.0;
  original.optim.min_lr = 5e-324;  // the smallest denormal
  original.optim.eps = 0.1;
  original.optim.weight_decay = 1e300;
  original.optim.grad_clip = 0;
  original.model.norm_eps = 1e-5;
  original.model.rope_theta = 500000;
  original.train.seed = std::numeric_limits<int64_t>::max();
  original.output.save_weights = false;
  original.memory.budget = "2GiB";
  original.parallel.pp = 3;
  original.parallel.pp_layers = {0, 7, 1};
  ASSERT_TRUE(original.validate().ok()) << original.validate();
  const std::string dumped = trainer::dump_config(original);
  EXPECT_EQ(first_difference(parse_ok(dumped), original), "") << dumped;
  // And once more: dumping the parsed config gives the same text.
  EXPECT_EQ(trainer::dump_config(parse_ok(dumped)), dumped);
}

TEST(ConfigOverrides, ValuesAreReadAsTheKeysType) {
  Config c = parse_ok(kData, {"train.max_steps=5", " optim.lr = 3e-4 ", "optim.min_lr=0", "optim.decay_embeddings=true",
                              "output.prompt=hello world", "output.dir=\"runs/quoted\"", "model.arch='llama'",
                              "train.seed=0x10", "optim.warmup_steps=1_000", "model.norm_eps=1"});
  EXPECT_EQ(c.train.max_steps, 5);
  EXPECT_EQ(c.optim.lr, 3e-4);
  EXPECT_EQ(c.optim.min_lr, 0.0);
  EXPECT_TRUE(c.optim.decay_embeddings);
  EXPECT_EQ(c.output.prompt, "hello world");
  EXPECT_EQ(c.output.dir, "runs/quoted");
  EXPECT_EQ(c.model.arch, "llama");
  EXPECT_EQ(c.train.seed, 16);
  EXPECT_EQ(c.optim.warmup_steps, 1000);
  EXPECT_EQ(c.model.norm_eps, 1.0);
}

TEST(ConfigOverrides, StringListsTakeArraysOrCommaLists) {
  EXPECT_EQ(parse_ok("", {"data.text=a.txt, b.txt,c"}).data.text, (std::vector<std::string>{"a.txt", "b.txt", "c"}));
  EXPECT_EQ(parse_ok("", {"data.text=[\"x,y\", 'z']"}).data.text, (std::vector<std::string>{"x,y", "z"}));
  Config c = parse_ok("[data]\ntext = [\"a\"]\n", {"data.text=", "data.dataset=prepared"});
  EXPECT_TRUE(c.data.text.empty());
  EXPECT_EQ(c.data.dataset, "prepared");
}

TEST(ConfigOverrides, IntegerListsTakeArraysOrCommaLists) {
  const std::vector<int64_t> want = {3, 1, 0};
  const std::string three = std::string("[parallel]\npp = 3\n") + kData;
  EXPECT_EQ(parse_ok(std::string("[parallel]\npp = 3\npp_layers = [3, 1, 0]\n") + kData).parallel.pp_layers, want);
  EXPECT_EQ(parse_ok(three, {"parallel.pp_layers= 3, 1 ,0"}).parallel.pp_layers, want);
  EXPECT_EQ(parse_ok(three, {"parallel.pp_layers=[0x3, 1, 0]"}).parallel.pp_layers, want);
  EXPECT_TRUE(parse_ok(three, {"parallel.pp_layers=3,1,0", "parallel.pp_layers="}).parallel.pp_layers.empty());
}

TEST(ConfigOverrides, ApplyAfterTheFileInOrder) {
  Config c = parse_ok(std::string("[train]\nmax_steps = 10\nbatch_size = 4\n") + kData,
                      {"train.max_steps=20", "train.max_steps=30", "output.prompt="});
  EXPECT_EQ(c.train.max_steps, 30);
  EXPECT_EQ(c.train.batch_size, 4);
  EXPECT_EQ(c.output.prompt, "");
  // An override can also repair what the file got wrong: validation runs last.
  EXPECT_EQ(parse_ok(std::string("[train]\nmax_steps = 0\n") + kData, {"train.max_steps=3"}).train.max_steps, 3);
}

TEST(ConfigLoad, ReadsAFile) {
  const std::string path = write_temp("ok.toml", std::string("[train]\nmax_steps = 12\n") + kData);
  absl::StatusOr<Config> c = trainer::load_config(path, {"train.batch_size=2"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->train.max_steps, 12);
  EXPECT_EQ(c->train.batch_size, 2);
  std::remove(path.c_str());
}

TEST(ConfigLoad, ErrorsNameTheFile) {
  absl::StatusOr<Config> missing = trainer::load_config("configs/does_not_exist.toml", {});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "configs/does_not_exist.toml: cannot read: No such file or directory");

  absl::StatusOr<Config> dir = trainer::load_config(testing::TempDir(), {});
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dir.status().message(), absl::StrCat(testing::TempDir(), ": cannot read: Is a directory"));

  const std::string garbage = write_temp("garbage.toml", std::string("[train]\n\0\x01\xff", 11));
  absl::StatusOr<Config> bin = trainer::load_config(garbage, {});
  EXPECT_EQ(bin.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bin.status().message(), absl::StrCat(garbage, ":2:1: not a UTF-8 text file (byte 0x00 at offset 8)"));
  std::remove(garbage.c_str());

  const std::string bad = write_temp("syntax.toml", "[train]\nmax_steps = 5\nseed = = 3\n");
  absl::StatusOr<Config> syntax = trainer::load_config(bad, {});
  EXPECT_EQ(syntax.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(syntax.status().message(), absl::StrCat(bad, ":3:8: "))) << syntax.status();
  std::remove(bad.c_str());
}

TEST(ConfigValidate, CrossSectionRulesNameBothKeys) {
  Config c;
  c.data.text = {"x"};
  ASSERT_TRUE(c.validate().ok());
  c.train.seq_len = 512;
  EXPECT_EQ(c.validate().message(), "train.seq_len: 512 exceeds model.block_size (256)");
  c.train.seq_len = 256;  // equal is fine
  EXPECT_TRUE(c.validate().ok());
  c.model.vocab_size = 100;
  EXPECT_EQ(c.validate().message(), "model.vocab_size: 100 is smaller than the byte tokenizer's 256 (data.tokenizer)");
}

TEST(ConfigValidate, SectionErrorsComeInSectionOrder) {
  Config c;  // data is missing and train.max_steps is bad: model, data, train, ... so data comes first
  c.train.max_steps = 0;
  EXPECT_EQ(c.validate().message(), "data.dataset: set data.dataset, data.text or data.instructions");
}

TEST(ParseBytes, AcceptsIntegersAndUnits) {
  const std::pair<const char*, int64_t> ok[] = {
      {"0", 0}, {"123", 123}, {"1B", 1}, {"2GiB", int64_t{2} << 30}, {"2gib", int64_t{2} << 30},
      {"512 MiB", int64_t{512} << 20}, {"1.5GB", 1500000000}, {"1.5KiB", 1536}, {"3kb", 3000}, {"1TiB", int64_t{1} << 40},
      {"0.0000001GB", 100}, {"1.0000000001KiB", 1024}, {" 7 ", 7}, {"9223372036854775807", INT64_MAX}};
  for (const auto& [text, bytes] : ok) {
    absl::StatusOr<int64_t> got = trainer::parse_bytes(text);
    ASSERT_TRUE(got.ok()) << text << ": " << got.status();
    EXPECT_EQ(*got, bytes) << text;
  }
}

TEST(ParseBytes, RejectsWhatIsNotASize) {
  for (const char* text : {"", "abc", "-1", "1.5", "1.5B", "2XB", "1e9", "GiB", "9223372036854775808", "8388608TiB",
                           "1 2", "0x10"}) {
    absl::StatusOr<int64_t> got = trainer::parse_bytes(text);
    ASSERT_FALSE(got.ok()) << "'" << text << "' gave " << *got;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(ConfigReference, MarkdownListsEveryKey) {
  const std::string md = trainer::config_reference_markdown();
  Config c;
  for (const FieldRef& f : trainer::bind_config_fields(c))
    EXPECT_NE(md.find(absl::StrCat("| `", f.full_key(), "` |")), std::string::npos) << f.full_key();
  EXPECT_NE(md.find("| `optim.schedule` | string | `\"cosine\"` | constant \\| cosine \\| linear"), std::string::npos)
      << md;
}

// configs/README.md must hold the current reference, so the docs cannot drift from the code. On failure the
// current reference is written to the build directory, ready to be pasted into the README's "Keys" part.
TEST(ConfigReference, ReadmeIsCurrent) {
  std::ifstream in(MEMTRAIN_SOURCE_DIR "/configs/README.md");
  ASSERT_TRUE(in) << "configs/README.md is missing";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string readme = ss.str();
  Config c;
  for (const FieldRef& f : trainer::bind_config_fields(c))
    EXPECT_NE(readme.find(absl::StrCat("`", f.full_key(), "`")), std::string::npos)
        << f.full_key() << " is not documented in configs/README.md";
  const std::string reference = trainer::config_reference_markdown();
  if (readme.find(reference) == std::string::npos) {
    const std::string path = MEMTRAIN_BINARY_DIR "/config_reference.md";
    std::ofstream(path) << reference;
    ADD_FAILURE() << "configs/README.md does not hold the current key reference; paste " << path << " into it";
  }
}

}  // namespace
}  // namespace memtrain
