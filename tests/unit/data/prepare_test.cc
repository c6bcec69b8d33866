// prepare_text_dataset: which files are read, the exact per-file split, tokens equal to the bytes, and errors.
#include "data/prepare.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "data/token_shard.h"
#include "tests/unit/data/test_dir.h"

namespace memtrain {
namespace {

using data::TokenShard;
using testing_util::TestDir;
using testing_util::write_bytes;

std::string shard_text(const std::string& path) {
  auto shard = TokenShard::open(path);
  EXPECT_TRUE(shard.ok()) << shard.status();
  if (!shard.ok()) return "";
  EXPECT_EQ(shard->vocab_size(), 256);
  std::vector<int32_t> ids(shard->size());
  shard->copy(0, shard->size(), ids.data());
  std::string text;
  for (int32_t id : ids) text.push_back(static_cast<char>(id));
  return text;
}

// Two text files, plus a .dat index, a hidden file, a symlink and a subdirectory that must all be skipped.
class PrepareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    corpus_ = dir_.file("corpus");
    std::filesystem::create_directory(corpus_);
    a_ = "First file, line one.\nLine two \xC3\xA9\xC3\xA9.\n";  // 37 bytes
    for (int i = 0; i < 7; ++i) b_ += "bbbbbbbbb" + std::to_string(i) + "\n";  // 77 bytes
    write_bytes(corpus_ + "/b_second", b_);
    write_bytes(corpus_ + "/a_first", a_);  // written second: order must come from the names
    write_bytes(corpus_ + "/a_first.dat", "DATINDEX");
    write_bytes(corpus_ + "/.hidden", "HIDDEN");
    write_bytes(dir_.file("outside.txt"), "OUTSIDE");
    std::filesystem::create_symlink(dir_.file("outside.txt"), corpus_ + "/link");
    std::filesystem::create_directory(corpus_ + "/sub");
    write_bytes(corpus_ + "/sub/nested", "NESTED");
  }
  static size_t n_train(size_t bytes, double val_fraction) {
    return static_cast<size_t>(std::floor(static_cast<double>(bytes) * (1 - val_fraction)));
  }

  TestDir dir_;
  std::string corpus_, a_, b_;
};

TEST_F(PrepareTest, SplitsEachFileAndSkipsNonText) {
  const std::string out = dir_.file("out/nested");  // created on demand
  auto stats = data::prepare_text_dataset({corpus_}, 0.1, out);
  ASSERT_TRUE(stats.ok()) << stats.status();
  const size_t ta = n_train(a_.size(), 0.1), tb = n_train(b_.size(), 0.1);
  ASSERT_EQ(a_.size(), 37u);
  ASSERT_EQ(b_.size(), 77u);
  EXPECT_EQ(ta, 33u);  // floor(37 * 0.9) = floor(33.3)
  EXPECT_EQ(tb, 69u);  // floor(77 * 0.9)
  EXPECT_EQ(stats->files, 2);
  EXPECT_EQ(stats->train_tokens, static_cast<int64_t>(ta + tb));
  EXPECT_EQ(stats->val_tokens, static_cast<int64_t>(a_.size() - ta + b_.size() - tb));
  EXPECT_EQ(shard_text(out + "/train.bin"), a_.substr(0, ta) + b_.substr(0, tb));
  EXPECT_EQ(shard_text(out + "/val.bin"), a_.substr(ta) + b_.substr(tb));
}

TEST_F(PrepareTest, SingleFileMatchesNanoGptSplit) {
  // nanoGPT's shakespeare_char: train = data[:int(n * 0.9)], val = the rest.
  std::string text;
  for (int i = 0; i < 1000; ++i) text += static_cast<char>('a' + i % 26);
  write_bytes(dir_.file("input.txt"), text);
  auto stats = data::prepare_text_dataset({dir_.file("input.txt")}, 0.1, dir_.file("out"));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->train_tokens, 900);
  EXPECT_EQ(stats->val_tokens, 100);
  EXPECT_EQ(shard_text(dir_.file("out/train.bin")), text.substr(0, 900));
  EXPECT_EQ(shard_text(dir_.file("out/val.bin")), text.substr(900));
}

TEST_F(PrepareTest, ExplicitFilesAreReadInTheGivenOrder) {
  // A file named directly is read even through a symlink; inputs keep the caller's order.
  auto stats = data::prepare_text_dataset({corpus_ + "/b_second", corpus_ + "/link"}, 0.5, dir_.file("out"));
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->files, 2);
  EXPECT_EQ(shard_text(dir_.file("out/train.bin")), b_.substr(0, n_train(b_.size(), 0.5)) + "OUT");
  EXPECT_EQ(shard_text(dir_.file("out/val.bin")), b_.substr(n_train(b_.size(), 0.5)) + "SIDE");
}

TEST_F(PrepareTest, MissingPathIsNotFound) {
  const std::string missing = dir_.file("no_such_dir");
  auto stats = data::prepare_text_dataset({corpus_, missing}, 0.1, dir_.file("out"));
  ASSERT_FALSE(stats.ok());
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(stats.status().message().find(missing), absl::string_view::npos) << stats.status();
  EXPECT_FALSE(std::filesystem::exists(dir_.file("out/train.bin")));
}

TEST_F(PrepareTest, NoFilesOrNoTextIsAnError) {
  const std::string empty_dir = dir_.file("empty_dir");
  std::filesystem::create_directory(empty_dir);
  write_bytes(empty_dir + "/only.dat", "x");
  auto none = data::prepare_text_dataset({empty_dir}, 0.1, dir_.file("out"));
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find(empty_dir), absl::string_view::npos) << none.status();
  EXPECT_NE(none.status().message().find("no text files"), absl::string_view::npos) << none.status();

  write_bytes(dir_.file("blank.txt"), "");
  auto blank = data::prepare_text_dataset({dir_.file("blank.txt")}, 0.1, dir_.file("out"));
  ASSERT_FALSE(blank.ok());
  EXPECT_NE(blank.status().message().find("blank.txt"), absl::string_view::npos) << blank.status();
  EXPECT_NE(blank.status().message().find("no text"), absl::string_view::npos) << blank.status();

  write_bytes(dir_.file("tiny.txt"), "abc");  // floor(3 * 0.9) = 2 train bytes, 1 val byte: fine
  EXPECT_TRUE(data::prepare_text_dataset({dir_.file("tiny.txt")}, 0.1, dir_.file("out")).ok());
  write_bytes(dir_.file("one.txt"), "a");  // floor(0.9) = 0: the train split would be empty
  auto one = data::prepare_text_dataset({dir_.file("one.txt")}, 0.1, dir_.file("out"));
  ASSERT_FALSE(one.ok());
  EXPECT_NE(one.status().message().find("train split"), absl::string_view::npos) << one.status();

  EXPECT_FALSE(data::prepare_text_dataset({corpus_}, 0.0, dir_.file("out")).ok());
  EXPECT_FALSE(data::prepare_text_dataset({corpus_}, 1.0, dir_.file("out")).ok());
}

TEST_F(PrepareTest, OutputDirectoryThatIsAFileIsAnError) {
  write_bytes(dir_.file("not_a_dir"), "x");
  auto stats = data::prepare_text_dataset({corpus_}, 0.1, dir_.file("not_a_dir"));
  ASSERT_FALSE(stats.ok());
  EXPECT_NE(stats.status().message().find("not_a_dir"), absl::string_view::npos) << stats.status();
}

// A BPE tokenizer whose vocabulary knows "é" (bytes C3 A9, byte-level characters "Ã" and "©") as one token: a cut that
// falls inside a character moves to its end, each side is tokenized on its own, and the shards carry the
// tokenizer's vocabulary size.
TEST_F(PrepareTest, ATokenizerOfCharactersCutsBetweenCharacters) {
  write_bytes(dir_.file("tokenizer.json"),
              R"({"normalizer": null, "pre_tokenizer": {"type": "ByteLevel"}, "added_tokens": [],
                  "model": {"type": "BPE", "vocab": {"\u00c3": 0, "\u00a9": 1, "\u00c3\u00a9": 2, "x": 3},
                            "merges": ["\u00c3 \u00a9"]}})");
  auto tok = data::load_tokenizer(dir_.file("tokenizer.json"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::string text;
  for (int i = 0; i < 9; ++i) text += "\xC3\xA9";  // 18 bytes; half of them ends inside the fifth character
  write_bytes(dir_.file("e.txt"), text);
  auto stats = data::prepare_text_dataset({dir_.file("e.txt")}, 0.5, dir_.file("out"), tok->get());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->train_tokens, 5);
  EXPECT_EQ(stats->val_tokens, 4);
  auto shard = TokenShard::open(dir_.file("out/train.bin"));
  ASSERT_TRUE(shard.ok());
  EXPECT_EQ(shard->vocab_size(), 4);
  std::vector<int32_t> ids(shard->size());
  shard->copy(0, shard->size(), ids.data());
  EXPECT_EQ(ids, std::vector<int32_t>(5, 2));
}

}  // namespace
}  // namespace memtrain
