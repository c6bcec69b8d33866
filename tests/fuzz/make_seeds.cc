// Writes the seed corpora of tests/fuzz/corpus/ (a few small valid inputs from the real writers and broken variants
// of them). Run after a format changes: build-fuzz/fuzz/fuzz_make_seeds <repo root>. Seeds of crashes found by
// fuzzing (crash-*) are added by hand next to these and are not touched here.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "core/checksum.h"
#include "data/token_shard.h"

namespace fs = std::filesystem;
using namespace memtrain;

namespace {

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void put(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.good()) {
    std::fprintf(stderr, "cannot write %s\n", (dir / name).c_str());
    std::exit(1);
  }
}

// ---- config: TOML, then overrides separated by 0xFF (see config_fuzz.cc) ----

void config_seeds(const fs::path& root, const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(root / "configs"))
    if (e.path().extension() == ".toml") put(dir, e.path().filename().string(), read_all(e.path()));
  const std::string sep = "\xff";
  put(dir, "empty.toml", "");
  put(dir, "overrides_only", sep + "train.max_steps=5" + sep + "optim.lr=1e-3" + sep + "data.text=a.txt,b" + sep +
                                 "output.prompt='  hi'" + sep + "model.tie_embeddings=true");
  put(dir, "every_type.toml",
      "[model]\narch = \"llama\"\nvocab_size = 512\nn_layer = 2\nn_head = 2\nn_embd = 64\nblock_size = 64\n"
      "[data]\ntext = [\"a.txt\", \"dir/\"]\nval_fraction = 0.25\n"
      "[train]\nmax_steps = 1_000\nbatch_size = 0x10\nseq_len = 32\n"
      "[optim]\nlr = 3e-4\nschedule = 'linear'\ndecay_steps = 500\n"
      "[memory]\nbudget = \"2GiB\"\n" +
          sep + "train.seq_len = 64" + sep + "data.text=[\"x\", 'y']" + sep + "memory.budget=512MiB");
  put(dir, "dotted_and_inline.toml",
      "model.n_layer = 3\ntrain = { max_steps = 7, batch_size = 2 }\n[output]\n\"dir\" = '''runs/x'''\n");
  put(dir, "typo.toml", "[train]\nmax_stpes = 3\n[optm]\nlr = 1\n");
  put(dir, "bad_types.toml", "[train]\nmax_steps = 3.0\n[optim]\nlr = inf\n[data]\ntext = [1, 2]\n");
  put(dir, "bad_syntax.toml", "[model\narch = \"gpt2\n= 3\n[[train]]\n");
  put(dir, "bad_overrides", "[model]\nn_layer = 1\n" + sep + "train.max_steps=99999999999999999999" + sep +
                                "nosection" + sep + "=" + sep + "model.arch" + sep + "data.text=a,,b" + sep +
                                "train.max_steps=1\nv = 2");
  put(dir, "cross_rules.toml", "[model]\nblock_size = 16\nvocab_size = 100\n[train]\nseq_len = 32\n"
                               "[optim]\nwarmup_steps = 10\ndecay_steps = 5\n");
  put(dir, "not_utf8.toml", std::string("[model]\narch = \"g\xc3\x28\"\n", 20) + std::string(1, '\0'));
}

// ---- token shards ----

void shard_seeds(const fs::path& dir) {
  const std::string tmp = (fs::temp_directory_path() / "memtrain_make_seeds.bin").string();
  auto shard = [&](const std::vector<int32_t>& tokens, int64_t vocab) {
    if (!data::write_token_shard(tmp, tokens, vocab).ok()) std::exit(1);
    std::string s = read_all(tmp);
    fs::remove(tmp);
    return s;
  };
  std::vector<int32_t> small;
  for (int i = 0; i < 24; ++i) small.push_back((i * 37 + 5) % 256);
  const std::string u16 = shard(small, 256);
  const std::string u32 = shard({0, 1, 70000, 99999, 12345}, 100000);
  put(dir, "valid_u16.bin", u16);
  put(dir, "valid_u32.bin", u32);
  put(dir, "valid_empty.bin", shard({}, 1));
  put(dir, "valid_max_vocab.bin", shard({0, 2147483647}, int64_t{1} << 31));
  put(dir, "truncated_header.bin", u16.substr(0, 40));
  put(dir, "truncated_body.bin", u16.substr(0, u16.size() - 3));
  put(dir, "trailing_byte.bin", u16 + "x");
  std::string flipped = u16;
  flipped[70] ^= 1;
  put(dir, "body_checksum.bin", flipped);
  std::string version = u32;
  version[8] = 2;
  put(dir, "version2.bin", version);
  std::string magic = u16;
  magic[0] = 'X';
  put(dir, "bad_magic.bin", magic);
  // Broken fields with checksums that match, as fuzz_token_shard_repaired sees them.
  auto resum = [](std::string s) {
    const uint64_t body = xxhash64(s.data() + 64, s.size() - 64);
    std::memcpy(s.data() + 32, &body, 8);
    const uint64_t header = xxhash64(s.data(), 40);
    std::memcpy(s.data() + 40, &header, 8);
    return s;
  };
  std::string dtype = u16;
  dtype[12] = 3;
  put(dir, "bad_dtype.bin", resum(dtype));
  std::string huge = u16;
  std::memset(huge.data() + 16, 0xff, 8);  // count = 2^64 - 1
  put(dir, "huge_count.bin", resum(huge));
  std::string vocab0 = u16;
  std::memset(vocab0.data() + 24, 0, 8);
  put(dir, "vocab_zero.bin", resum(vocab0));
  std::string padding = u16;
  padding[63] = 1;
  put(dir, "padding.bin", resum(padding));
}

// ---- safetensors ----

void safetensors_seeds(const fs::path& dir) {
  const std::string tmp = (fs::temp_directory_path() / "memtrain_make_seeds.safetensors").string();
  auto file = [&](const std::vector<checkpoint::NamedTensor>& tensors, const std::map<std::string, std::string>& meta) {
    if (!checkpoint::write_safetensors(tmp, tensors, meta).ok()) std::exit(1);
    std::string s = read_all(tmp);
    fs::remove(tmp);
    return s;
  };
  auto tensor = [](Shape shape, DType dt) {
    Tensor t = Tensor::empty(std::move(shape), dt, MemCategory::kWorkspace).value();
    auto* p = static_cast<unsigned char*>(t.raw());
    for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<unsigned char>(i * 29 + 3);
    return t;
  };
  const std::string valid = file({{"wte.weight", tensor({4, 3}, DType::kF32)},
                                  {"ln.bias", tensor({3}, DType::kBF16)},
                                  {"h.0.ids", tensor({2, 2}, DType::kI32)},
                                  {"q", tensor({5}, DType::kI8)},
                                  {"mask", tensor({2}, DType::kU8)},
                                  {"half", tensor({1, 1, 2}, DType::kF16)},
                                  {"tok", tensor({3}, DType::kU16)}},
                                 {{"format", "pt"}, {"step", "12"}});
  put(dir, "valid.safetensors", valid);
  put(dir, "valid_empty.safetensors", file({}, {}));
  put(dir, "valid_zero_size.safetensors",
      file({{"none", tensor({0, 7}, DType::kF32)}, {"s", tensor({}, DType::kU8)}}, {}));
  auto raw = [](const std::string& json, const std::string& data) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(static_cast<uint64_t>(json.size()) >> (8 * i));
    return s + json + data;
  };
  // Hugging Face files carry no memtrain checksum.
  put(dir, "no_checksum.safetensors",
      raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
          R"("b":{"dtype":"U8","shape":[],"data_offsets":[8,9]}})",
          std::string(9, '\x01')));
  put(dir, "gap.safetensors", raw(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})", "xyz"));
  put(dir, "overlap.safetensors",
      raw(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
          R"("b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})",
          "xyz"));
  put(dir, "bad_dtype.safetensors",
      raw(R"({"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", std::string(8, 0)));
  put(dir, "bad_json.safetensors", raw(R"({"a":{"dtype":"U8","shape":[1],)", "x"));
  put(dir, "bad_metadata.safetensors", raw(R"({"__metadata__":{"x":1}})", ""));
  put(dir, "huge_shape.safetensors",
      raw(R"({"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,4]}})", "abcd"));
  put(dir, "huge_length.safetensors", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10));
  std::string corrupt = valid;
  corrupt[corrupt.size() - 1] ^= 0x40;
  put(dir, "checksum_mismatch.safetensors", corrupt);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <memtrain source root>\n", argv[0]);
    return 2;
  }
  const fs::path root = argv[1];
  const fs::path corpus = root / "tests/fuzz/corpus";
  config_seeds(root, corpus / "fuzz_config");
  shard_seeds(corpus / "fuzz_token_shard");
  shard_seeds(corpus / "fuzz_token_shard_repaired");
  safetensors_seeds(corpus / "fuzz_safetensors");
  std::printf("seeds written under %s\n", corpus.c_str());
  return 0;
}
