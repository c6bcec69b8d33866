#!/usr/bin/python3
"""Hugging Face `tokenizers` side of tests/reference/bpe_tokenizer_reference_test.cc (run with the venv python
that scripts/setup.sh makes).

  hf_tokenizer.py train CORPUS OUT_DIR VOCAB_SIZE
      trains a byte-level BPE tokenizer (GPT-2's pre-tokenizer, <|endoftext|> as a special token) on CORPUS and
      saves OUT_DIR/tokenizer.json and GPT-2-style OUT_DIR/vocab.json + OUT_DIR/merges.txt
  hf_tokenizer.py train_sp CORPUS OUT_DIR VOCAB_SIZE
      trains a SentencePiece-style BPE tokenizer as LLaMA-2's is built (▁ for spaces, byte fallback with the 256
      <0xXX> tokens, <unk> fused, a small alphabet so that rarer characters fall back to bytes) and saves it in the
      three forms transformers writes: OUT_DIR/sp_split.json (Metaspace, prepend "first", split),
      OUT_DIR/sp_whole.json (Metaspace without splitting) and OUT_DIR/sp_normalizer.json (LLaMA-2's
      Prepend + Replace normalizer, no pre-tokenizer)
  hf_tokenizer.py encode TOKENIZER_JSON TEXT OUT
      encodes the whole of TEXT (UTF-8) and writes the ids to OUT as little-endian int32
"""
import json
import struct
import sys

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers


def train_sentencepiece_style(corpus, out_dir, vocab_size):
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, limit_alphabet=70,
                                  show_progress=False)
    tok.train([corpus], trainer)
    tok.save(out_dir + "/sp_split.json")
    with open(out_dir + "/sp_split.json") as f:
        j = json.load(f)
    j["pre_tokenizer"]["split"] = False
    with open(out_dir + "/sp_whole.json", "w") as f:
        json.dump(j, f)
    j["pre_tokenizer"] = None
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    with open(out_dir + "/sp_normalizer.json", "w") as f:
        json.dump(j, f)


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "train":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=int(sys.argv[4]), special_tokens=["<|endoftext|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train([sys.argv[2]], trainer)
        tok.save(sys.argv[3] + "/tokenizer.json")
        tok.model.save(sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "train_sp":
        train_sentencepiece_style(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) == 5 and sys.argv[1] == "encode":
        tok = Tokenizer.from_file(sys.argv[2])
        with open(sys.argv[3], encoding="utf-8", newline="") as f:  # keeps \r\n as it is
            text = f.read()
        ids = tok.encode(text, add_special_tokens=False).ids
        with open(sys.argv[4], "wb") as f:
            f.write(struct.pack(f"<{len(ids)}i", *ids))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
