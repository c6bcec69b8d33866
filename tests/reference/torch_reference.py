#!/usr/bin/python3
"""PyTorch reference for memtrain's whole-model check (tests/reference/torch_reference_test.cc).

Usage: /usr/bin/python3 torch_reference.py CONFIG.json INPUT.safetensors OUTPUT.safetensors

INPUT holds every model parameter under its Hugging Face name plus the batch ("batch.tokens" and "batch.targets",
int32 (B, T)). CONFIG is a small JSON object with the model sizes and the AdamW settings (see main()). The script
builds GPT-2 or LLaMA in plain float32 torch (written out here, no transformers), takes the mean cross-entropy over
the batch and its gradient, then runs `steps` AdamW steps (torch.optim.AdamW, constant lr) on the same batch.

OUTPUT holds the gradient of every parameter at the initial weights, under the parameter's own name, and in
__metadata__: "losses" (JSON list: the loss before each step, then the loss after the last one) and "decayed"
(JSON list of the parameter names put in the weight-decay group), so that the C++ test can check memtrain's rule.

Debian's python3-torch has no safetensors package; the format (8-byte little-endian header length, JSON header,
raw little-endian data) is read and written with json + numpy below.
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

_NP_DTYPES = {"F32": "<f4", "I32": "<i4"}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        arr = np.frombuffer(data[base + begin:base + end], dtype=_NP_DTYPES[e["dtype"]]).reshape(e["shape"])
        tensors[name] = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True))
    return tensors, metadata


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, t in tensors.items():
        blob = np.ascontiguousarray(t.detach().cpu().numpy().astype("<f4")).tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)  # the format pads the header with spaces to a multiple of 8
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)


# ---------------------------------------------------------------------------------------------------------------
# Parameter names, as memtrain registers them (Hugging Face's names and layouts).

def gpt2_param_names(cfg):
    names = ["transformer.wte.weight", "transformer.wpe.weight"]
    for l in range(cfg["n_layer"]):
        p = f"transformer.h.{l}."
        for layer in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"):
            names.append(p + layer + ".weight")
            if cfg["bias"]:
                names.append(p + layer + ".bias")
    names.append("transformer.ln_f.weight")
    if cfg["bias"]:
        names.append("transformer.ln_f.bias")
    if not cfg["tied"]:
        names.append("lm_head.weight")
    return names


def llama_param_names(cfg):
    names = ["model.embed_tokens.weight"]
    for l in range(cfg["n_layer"]):
        p = f"model.layers.{l}."
        names += [p + "input_layernorm.weight"]
        names += [p + f"self_attn.{x}_proj.weight" for x in "qkvo"]
        names += [p + "post_attention_layernorm.weight"]
        names += [p + f"mlp.{x}_proj.weight" for x in ("gate", "up", "down")]
    names.append("model.norm.weight")
    if not cfg["tied"]:
        names.append("lm_head.weight")
    return names


def decays(name, cfg):
    """memtrain's weight-decay rule, restated: matrices decay; embeddings, norms and biases only when asked."""
    if name in ("transformer.wte.weight", "transformer.wpe.weight", "model.embed_tokens.weight"):
        return cfg["decay_embeddings"]
    if name.endswith(".bias") or "ln_" in name or "layernorm" in name or name == "model.norm.weight":
        return cfg["decay_norms_and_biases"]
    return True


# ---------------------------------------------------------------------------------------------------------------
# The two models, float32 throughout. P maps names to leaf tensors.

def causal_attention(q, k, v):
    """q, k, v: (B, H, T, D). softmax(q k^T / sqrt(D) + causal mask) v."""
    T, D = q.shape[-2], q.shape[-1]
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def lora_delta(P, cfg, x, name):
    """A LoRA adapter's output as PEFT's LoraLayer computes it, unmerged: (x A^T) B^T * lora_alpha / r, with A
    (r, in) and B (out, r) under NAME.lora_A.weight / NAME.lora_B.weight; 0 where NAME has none."""
    A, B = P.get(name + ".lora_A.weight"), P.get(name + ".lora_B.weight")
    if A is None:
        return 0.0
    return (x @ A.t()) @ B.t() * cfg["lora_scale"]


def gpt2_forward(P, cfg, tokens):
    B, T = tokens.shape
    C, H = cfg["n_embd"], cfg["n_head"]
    D = C // H
    bias = cfg["bias"]

    def ln(x, name):
        return F.layer_norm(x, (C,), P[name + ".weight"], P[name + ".bias"] if bias else None, cfg["norm_eps"])

    def conv1d(x, name):  # Hugging Face Conv1D: weight (in, out), y = x W + b
        y = x @ P[name + ".weight"] + lora_delta(P, cfg, x, name)
        return y + P[name + ".bias"] if bias else y

    def heads(t):  # (B, T, C) -> (B, H, T, D)
        return t.view(B, T, H, D).transpose(1, 2)

    x = P["transformer.wte.weight"][tokens] + P["transformer.wpe.weight"][:T]
    for l in range(cfg["n_layer"]):
        p = f"transformer.h.{l}."
        q, k, v = conv1d(ln(x, p + "ln_1"), p + "attn.c_attn").split(C, dim=-1)
        y = causal_attention(heads(q), heads(k), heads(v)).transpose(1, 2).reshape(B, T, C)
        x = x + conv1d(y, p + "attn.c_proj")
        h = F.gelu(conv1d(ln(x, p + "ln_2"), p + "mlp.c_fc"), approximate="tanh")
        x = x + conv1d(h, p + "mlp.c_proj")
    x = ln(x, "transformer.ln_f")
    head = P["transformer.wte.weight"] if cfg["tied"] else P["lm_head.weight"]
    return x @ head.t()


def rope_cos_sin(T, D, theta):
    """Hugging Face LLaMA's tables: inv_freq = 1 / theta^(2i/D) in float32, angles duplicated for rotate_half."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, D)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def llama_forward(P, cfg, tokens):
    B, T = tokens.shape
    C, H, Hkv = cfg["n_embd"], cfg["n_head"], cfg["n_kv_head"]
    D = C // H
    eps = cfg["norm_eps"]

    def rms_norm(x, name):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * P[name + ".weight"]

    def linear(x, name):  # nn.Linear without bias: weight (out, in)
        return x @ P[name + ".weight"].t() + lora_delta(P, cfg, x, name)

    cos, sin = rope_cos_sin(T, D, cfg["rope_theta"])
    x = P["model.embed_tokens.weight"][tokens]
    for l in range(cfg["n_layer"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, p + "input_layernorm")
        q = linear(h, p + "self_attn.q_proj").view(B, T, H, D).transpose(1, 2)
        k = linear(h, p + "self_attn.k_proj").view(B, T, Hkv, D).transpose(1, 2)
        v = linear(h, p + "self_attn.v_proj").view(B, T, Hkv, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # GQA: query head h reads kv head h // (H / Hkv).
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
        y = causal_attention(q, k, v).transpose(1, 2).reshape(B, T, C)
        x = x + linear(y, p + "self_attn.o_proj")
        h = rms_norm(x, p + "post_attention_layernorm")
        x = x + linear(F.silu(linear(h, p + "mlp.gate_proj")) * linear(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms_norm(x, "model.norm")
    head = P["model.embed_tokens.weight"] if cfg["tied"] else P["lm_head.weight"]
    return x @ head.t()


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: torch_reference.py CONFIG.json INPUT.safetensors OUTPUT.safetensors")
    torch.set_num_threads(2)
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    tensors, _ = read_safetensors(sys.argv[2])
    tokens = tensors.pop("batch.tokens").long()
    targets = tensors.pop("batch.targets").long()

    if cfg["arch"] == "gpt2":
        names, forward = gpt2_param_names(cfg), gpt2_forward
    elif cfg["arch"] == "llama":
        names, forward = llama_param_names(cfg), llama_forward
    else:
        sys.exit(f"unknown arch {cfg['arch']}")
    missing, extra = sorted(set(names) - set(tensors)), sorted(set(tensors) - set(names))
    if missing or extra:
        sys.exit(f"parameter names differ from the reference model: missing {missing}, unexpected {extra}")
    P = {}
    for name in names:
        t = tensors[name]
        assert t.dtype == torch.float32, name
        P[name] = t.clone().requires_grad_(True)

    def loss_fn():
        logits = forward(P, cfg, tokens)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    decayed = [n for n in names if decays(n, cfg)]
    groups = [{"params": [P[n] for n in decayed], "weight_decay": cfg["weight_decay"]},
              {"params": [P[n] for n in names if not decays(n, cfg)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"],
                            foreach=False)

    losses, grads = [], None
    for step in range(cfg["steps"]):
        opt.zero_grad(set_to_none=False)
        loss = loss_fn()
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            grads = {n: P[n].grad.detach().clone() for n in names}
        opt.step()
    with torch.no_grad():
        losses.append(loss_fn().item())
    if grads is None:  # steps == 0: the gradient at the initial weights only
        opt.zero_grad(set_to_none=False)
        loss_fn().backward()
        grads = {n: P[n].grad.detach().clone() for n in names}

    # repr of a Python float is exact; the losses are float32 values widened to double.
    write_safetensors(sys.argv[3], grads, {"losses": json.dumps(losses), "decayed": json.dumps(decayed)})


if __name__ == "__main__":
    main()
