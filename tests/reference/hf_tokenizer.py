#!/usr/bin/python3
"""Hugging Face `tokenizers` side of tests/reference/bpe_tokenizer_reference_test.cc (run with the venv python
that scripts/setup.sh makes).

  hf_tokenizer.py train CORPUS OUT_DIR VOCAB_SIZE
      trains a byte-level BPE tokenizer (GPT-2's pre-tokenizer, <|endoftext|> as a special token) on CORPUS and
      saves OUT_DIR/tokenizer.json and GPT-2-style OUT_DIR/vocab.json + OUT_DIR/merges.txt
  hf_tokenizer.py encode TOKENIZER_JSON TEXT OUT
      encodes the whole of TEXT (UTF-8) and writes the ids to OUT as little-endian int32
"""
import struct
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


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
