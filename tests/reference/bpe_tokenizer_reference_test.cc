// memtrain's byte-level BPE against Hugging Face's `tokenizers` package (tests/reference/hf_tokenizer.py, run by
// the venv python scripts/setup.sh makes; skipped, saying so, where it is missing): a tokenizer trained by the
// package on the shared Shakespeare text (or, where that is absent, the fortunes corpus) plus a Unicode sample
// (accents, Cyrillic, CJK, emoji, other digits and numerals, non-ASCII spaces, tabs, CRLF, contractions in both
// cases, special tokens) encodes the whole corpus to the package's ids exactly, from tokenizer.json and from the
// vocab.json + merges.txt pair; decoding gives the text back. The same for a SentencePiece-style tokenizer with
// byte fallback (LLaMA-2's scheme) in its three tokenizer.json forms.
#include "data/bpe_tokenizer.h"
#include "tests/reference/pyref.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace memtrain::data {
namespace {

namespace fs = std::filesystem;

using testing::reference_python;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The corpus: tiny Shakespeare where the checkout sits beside the shared data, else the fortunes.
std::string corpus_text() {
  for (const std::string& p : {std::string(MEMTRAIN_SOURCE_DIR) + "/../shared/data/tinyshakespeare.txt",
                              std::string("/work/shared/data/tinyshakespeare.txt")}) {
    if (fs::exists(p)) return slurp(p);
  }
  std::string text;
  for (const auto& e : fs::directory_iterator("/usr/share/games/fortunes")) {
    if (e.path().extension().empty() && e.is_regular_file()) text += slurp(e.path().string());
  }
  return text;
}

constexpr char kUnicode[] =
    "Café déjà vu — naïve façade; Привет, мир! 東京は晴れ。 Emoji 🙂🚀 and ẞ.\n"
    "Digits ٣٤٥ and ² and Ⅻ; it's, IT'S, we'll, they'd, I'm, you've, we're.\n"
    "Tabs\tand  double  spaces,\u00a0no-break\u3000ideographic, \r\nCRLF lines   \n\n"
    "<|endoftext|>Next document<|endoftext|>  trailing spaces   ";

class BpeReference : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::reference_python_has("tokenizers")) {
      GTEST_SKIP() << reference_python() << " cannot import tokenizers: run scripts/setup.sh";
    }
    dir_ = ::testing::TempDir() + "memtrain_bpe_" + std::to_string(getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  int script(const std::string& args) const { return testing::run_reference_script("hf_tokenizer.py", args); }
  std::string dir_;
};

TEST_F(BpeReference, EncodingsEqualTheTokenizersPackage) {
  const std::string text = corpus_text() + kUnicode;
  ASSERT_GT(text.size(), 100000u);
  {
    std::ofstream f(dir_ + "/corpus.txt", std::ios::binary);
    f << text;
  }
  ASSERT_EQ(script("train " + dir_ + "/corpus.txt " + dir_ + " 2000"), 0);
  ASSERT_EQ(script("encode " + dir_ + "/tokenizer.json " + dir_ + "/corpus.txt " + dir_ + "/ids.bin"), 0);
  const std::string raw = slurp(dir_ + "/ids.bin");
  std::vector<int32_t> want(raw.size() / 4);
  std::memcpy(want.data(), raw.data(), raw.size());

  auto from_json = BpeTokenizer::from_tokenizer_json(dir_ + "/tokenizer.json");
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  EXPECT_EQ(from_json->vocab_size(), 2000);
  const std::vector<int32_t> got = from_json->encode(text);
  ASSERT_EQ(got.size(), want.size());
  size_t first_difference = 0;
  while (first_difference < got.size() && got[first_difference] == want[first_difference]) ++first_difference;
  EXPECT_EQ(first_difference, got.size()) << "first difference at token " << first_difference;
  std::printf("%zu bytes -> %zu tokens, equal to tokenizers'\n", text.size(), got.size());
  EXPECT_TRUE(from_json->decode(got) == text) << "decoding does not give the text back";

  auto from_files = BpeTokenizer::from_vocab_merges(dir_ + "/vocab.json", dir_ + "/merges.txt");
  ASSERT_TRUE(from_files.ok()) << from_files.status();
  EXPECT_TRUE(from_files->encode(text) == want) << "vocab.json + merges.txt encode differently";
}

// SentencePiece-style BPE (LLaMA-2's scheme) with byte fallback, trained by the package on the same corpus with a
// 70-character alphabet (so the Unicode sample's rarer characters become <0xXX> bytes), in the three forms its
// tokenizer.json takes: Metaspace splitting at every ▁, Metaspace over the whole text, and LLaMA-2's normalizer
// with no pre-tokenizer (the whole text is one word: the merges run over 1.1M symbols).
TEST_F(BpeReference, SentencePieceStyleEncodingsEqualTheTokenizersPackage) {
  const std::string text = corpus_text() + kUnicode;
  {
    std::ofstream f(dir_ + "/corpus.txt", std::ios::binary);
    f << text;
  }
  ASSERT_EQ(script("train_sp " + dir_ + "/corpus.txt " + dir_ + " 1200"), 0);
  for (const std::string form : {"sp_split", "sp_whole", "sp_normalizer"}) {
    SCOPED_TRACE(form);
    const std::string json = dir_ + "/" + form + ".json";
    ASSERT_EQ(script("encode " + json + " " + dir_ + "/corpus.txt " + dir_ + "/ids.bin"), 0);
    const std::string raw = slurp(dir_ + "/ids.bin");
    std::vector<int32_t> want(raw.size() / 4);
    std::memcpy(want.data(), raw.data(), raw.size());
    auto tok = BpeTokenizer::from_tokenizer_json(json);
    ASSERT_TRUE(tok.ok()) << tok.status();
    const std::vector<int32_t> got = tok->encode(text);
    ASSERT_EQ(got.size(), want.size());
    size_t first_difference = 0;
    while (first_difference < got.size() && got[first_difference] == want[first_difference]) ++first_difference;
    EXPECT_EQ(first_difference, got.size()) << "first difference at token " << first_difference;
    int64_t fallback = 0;
    for (int32_t id : got) fallback += id >= 3 && id < 3 + 256;
    std::printf("%s: %zu bytes -> %zu tokens (%lld byte-fallback tokens), equal to tokenizers'\n", form.c_str(),
                text.size(), got.size(), static_cast<long long>(fallback));
    EXPECT_GT(fallback, 0) << "the sample should exercise byte fallback";
    const std::string back = tok->decode(got);
    size_t at = 0;
    while (at < back.size() && at < text.size() && back[at] == text[at]) ++at;
    EXPECT_EQ(at, text.size()) << "decoding differs from byte " << at << ": '" << back.substr(at, 20) << "' vs '"
                               << text.substr(at, 20) << "'";
  }
}

}  // namespace
}  // namespace memtrain::data
