#!/usr/bin/python3
"""Hugging Face model directories for memtrain's convert tests (tests/reference/hf_convert_test.cc), read and
written with Hugging Face's own `safetensors` package, the model run by torch_reference.py's PyTorch code.

Usage (run with the python of the venv scripts/setup.sh makes, which has safetensors and sees Debian's torch):
  hf_model.py logits HF_DIR TOKENS.json OUT.json
      loads config.json and the weights (model.safetensors, or the shards model.safetensors.index.json lists) with
      safetensors.torch, runs the model in float32 on TOKENS (a JSON list of equal-length token lists) and writes
      the last position's logits of each sequence as a JSON list of lists.
  hf_model.py peft_logits HF_DIR ADAPTER_DIR TOKENS.json OUT.json
      the same with a PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors, tensors named
      base_model.model.<module>.lora_A.weight / lora_B.weight) applied the way peft's LoraLayer does, unmerged;
      checks the config as peft reads it.
  hf_model.py make ARCH HF_DIR SEED
      writes a small random GPT-2 or LLaMA the way Hugging Face files hold them: bfloat16, sharded with an index,
      GPT-2 under the original release's names (no "transformer." prefix) with its attention-mask buffers, a tied
      lm_head copy, and LLaMA with grouped-query attention.
"""
import json
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402


def load_weights(hf_dir):
    index = os.path.join(hf_dir, "model.safetensors.index.json")
    files = ["model.safetensors"]
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    tensors = {}
    for name in files:
        with safe_open(os.path.join(hf_dir, name), framework="pt") as f:
            assert f.metadata().get("format") == "pt", "transformers needs metadata format=pt"
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    return tensors


def reference_config(hf):
    if hf["model_type"] == "gpt2":
        return {"arch": "gpt2", "n_embd": hf["n_embd"], "n_head": hf["n_head"], "n_kv_head": hf["n_head"],
                "n_layer": hf["n_layer"], "bias": True, "tied": hf.get("tie_word_embeddings", True),
                "norm_eps": hf["layer_norm_epsilon"], "rope_theta": 10000.0}
    return {"arch": "llama", "n_embd": hf["hidden_size"], "n_head": hf["num_attention_heads"],
            "n_kv_head": hf["num_key_value_heads"], "n_layer": hf["num_hidden_layers"], "bias": False,
            "tied": hf.get("tie_word_embeddings", False), "norm_eps": hf["rms_norm_eps"],
            "rope_theta": hf["rope_theta"]}


def read_adapter(adapter_dir, arch):
    """The adapter's tensors under memtrain's (= the base model's) names, and its scale lora_alpha / r."""
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        ac = json.load(f)
    assert ac["peft_type"] == "LORA" and ac["task_type"] == "CAUSAL_LM", ac
    assert ac["bias"] == "none" and not ac.get("use_rslora") and not ac.get("use_dora"), ac
    assert ac["fan_in_fan_out"] == (arch == "gpt2"), "GPT-2's Conv1D needs fan_in_fan_out"
    prefix = "base_model.model."
    P = {}
    with safe_open(os.path.join(adapter_dir, "adapter_model.safetensors"), framework="pt") as f:
        for key in f.keys():
            assert key.startswith(prefix) and key.endswith((".lora_A.weight", ".lora_B.weight")), key
            module = key[len(prefix):].rsplit(".", 2)[0]
            assert module.rsplit(".", 1)[-1] in ac["target_modules"], key
            P[key[len(prefix):]] = f.get_tensor(key).float()
    return P, ac["lora_alpha"] / ac["r"]


def logits(hf_dir, tokens_path, out_path, adapter_dir=None):
    with open(os.path.join(hf_dir, "config.json")) as f:
        cfg = reference_config(json.load(f))
    P = {}
    for name, t in load_weights(hf_dir).items():
        if cfg["arch"] == "gpt2" and not name.startswith(("transformer.", "lm_head.")):
            name = "transformer." + name
        P[name] = t.float()
    names = ref.gpt2_param_names(cfg) if cfg["arch"] == "gpt2" else ref.llama_param_names(cfg)
    missing = sorted(set(names) - set(P))
    if missing:
        sys.exit(f"missing tensors: {missing}")
    cfg["lora_scale"] = 0.0
    if adapter_dir is not None:
        adapter, cfg["lora_scale"] = read_adapter(adapter_dir, cfg["arch"])
        for name, t in adapter.items():
            weight = P.get(name.rsplit(".", 2)[0] + ".weight")
            assert weight is not None, f"{name} adapts no weight of the model"
            if name.endswith("lora_A.weight"):  # (r, in); Conv1D weights are (in, out)
                assert t.shape[1] == weight.shape[0 if cfg["arch"] == "gpt2" else 1], name
        P.update(adapter)
    with open(tokens_path) as f:
        tokens = torch.tensor(json.load(f), dtype=torch.long)
    forward = ref.gpt2_forward if cfg["arch"] == "gpt2" else ref.llama_forward
    with torch.no_grad():
        out = forward(P, cfg, tokens)[:, -1, :]
    with open(out_path, "w") as f:
        json.dump(out.tolist(), f)


def make(arch, hf_dir, seed):
    g = torch.Generator().manual_seed(seed)
    V, C, L, F = 96, 32, 2, 64
    if arch == "gpt2":
        hf = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": V, "n_positions": 16,
              "n_ctx": 16, "n_embd": C, "n_layer": L, "n_head": 4, "n_inner": None,
              "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True}
        shapes = {"wte.weight": (V, C), "wpe.weight": (16, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
        for l in range(L):
            p = f"h.{l}."
            for n, s in (("ln_1", C), ("ln_2", C)):
                shapes[p + n + ".weight"], shapes[p + n + ".bias"] = (s,), (s,)
            for n, i, o in (("attn.c_attn", C, 3 * C), ("attn.c_proj", C, C), ("mlp.c_fc", C, 4 * C),
                            ("mlp.c_proj", 4 * C, C)):
                shapes[p + n + ".weight"], shapes[p + n + ".bias"] = (i, o), (o,)
    else:
        hf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": C,
              "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": 4, "num_key_value_heads": 2,
              "hidden_act": "silu", "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 500000.0,
              "rope_scaling": None, "attention_bias": False, "tie_word_embeddings": False}
        D = C // 4
        shapes = {"model.embed_tokens.weight": (V, C), "model.norm.weight": (C,), "lm_head.weight": (V, C)}
        for l in range(L):
            p = f"model.layers.{l}."
            shapes[p + "input_layernorm.weight"] = (C,)
            shapes[p + "post_attention_layernorm.weight"] = (C,)
            for n, o, i in (("q", C, C), ("k", 2 * D, C), ("v", 2 * D, C), ("o", C, C)):
                shapes[p + f"self_attn.{n}_proj.weight"] = (o, i)
            for n, o, i in (("gate", F, C), ("up", F, C), ("down", C, F)):
                shapes[p + f"mlp.{n}_proj.weight"] = (o, i)
    hf["torch_dtype"] = "bfloat16"
    tensors = {n: (torch.randn(s, generator=g) * 0.2).to(torch.bfloat16) for n, s in shapes.items()}
    if arch == "gpt2":
        tensors["lm_head.weight"] = tensors["wte.weight"].clone()
        for l in range(L):  # the causal-mask buffers old transformers versions saved
            tensors[f"h.{l}.attn.bias"] = torch.ones(1, 1, 16, 16, dtype=torch.bfloat16).tril()
    os.makedirs(hf_dir, exist_ok=True)
    with open(os.path.join(hf_dir, "config.json"), "w") as f:
        json.dump(hf, f, indent=2)
    names = sorted(tensors)
    shards = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for k, shard in enumerate(shards):
        file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: tensors[n] for n in shard}, os.path.join(hf_dir, file), metadata={"format": "pt"})
        weight_map.update({n: file for n in shard})
    with open(os.path.join(hf_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(t.numel() * 2 for t in tensors.values())},
                   "weight_map": weight_map}, f, indent=2)


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "logits":
        logits(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 6 and sys.argv[1] == "peft_logits":
        logits(sys.argv[2], sys.argv[4], sys.argv[5], adapter_dir=sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
