#!/usr/bin/python3
"""nanoGPT's small CPU recipe in PyTorch, for the side-by-side figure in docs/benchmarks.md: the model of
torch_reference.py (GPT-2, no biases, bytes as characters), 4 layers, 4 heads, width 128, context 64, batch 12,
2000 iterations, AdamW (beta2 0.99, weight decay 0.1 on every matrix), warmup 100 then cosine to 1e-4, clip 1.0.
Validation loss is computed as memtrain computes it: over every non-overlapping 64-token window of the held-out
last 10% of the text. Prints the validation loss and the wall time.

usage: torch_shakespeare.py TEXT [--steps N] [--threads N]
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import gpt2_forward, gpt2_param_names  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("text")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1337)
    raw = open(args.text, "rb").read()
    n = int(len(raw) * 0.9)
    train = torch.tensor(list(raw[:n]), dtype=torch.long)
    val = torch.tensor(list(raw[n:]), dtype=torch.long)
    L, C, V, T, B = 4, 128, 256, 64, 12
    cfg = {"n_layer": L, "n_head": 4, "n_embd": C, "vocab_size": V, "block_size": T, "bias": False, "tied": True,
           "norm_eps": 1e-5}
    P = {}
    for name in gpt2_param_names(cfg):
        if name == "transformer.wte.weight":
            shape = (V, C)
        elif name == "transformer.wpe.weight":
            shape = (T, C)
        elif "ln_" in name:
            shape = (C,)
        elif "c_attn" in name:
            shape = (C, 3 * C)
        elif "c_fc" in name:
            shape = (C, 4 * C)
        elif "mlp.c_proj" in name:
            shape = (4 * C, C)
        else:
            shape = (C, C)
        if len(shape) == 1:
            t = torch.ones(shape)
        else:
            std = 0.02 / math.sqrt(2 * L) if name.endswith("c_proj.weight") else 0.02
            t = torch.randn(shape) * std
        P[name] = t.requires_grad_(True)
    decay = [p for p in P.values() if p.dim() >= 2]
    no_decay = [p for p in P.values() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99))

    def lr_at(it):
        if it < 100:
            return 1e-3 * (it + 1) / 100
        ratio = (it - 100) / (args.steps - 100)
        return 1e-4 + 0.5 * (1 + math.cos(math.pi * ratio)) * (1e-3 - 1e-4)

    t0 = time.perf_counter()
    for it in range(args.steps):
        ix = torch.randint(len(train) - T - 1, (B,))
        x = torch.stack([train[i:i + T] for i in ix])
        y = torch.stack([train[i + 1:i + T + 1] for i in ix])
        for g in opt.param_groups:
            g["lr"] = lr_at(it)
        loss = F.cross_entropy(gpt2_forward(P, cfg, x).view(-1, V), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(P.values(), 1.0)
        opt.step()
        if (it + 1) % 500 == 0:
            print(f"step {it + 1} loss {loss.item():.4f} {time.perf_counter() - t0:.1f} s", flush=True)
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        windows = (len(val) - 1) // T
        total, count = 0.0, 0
        for w0 in range(0, windows, 64):
            ws = range(w0, min(windows, w0 + 64))
            x = torch.stack([val[w * T:w * T + T] for w in ws])
            y = torch.stack([val[w * T + 1:w * T + T + 1] for w in ws])
            total += F.cross_entropy(gpt2_forward(P, cfg, x).view(-1, V), y.view(-1), reduction="sum").item()
            count += y.numel()
    print(f"torch {torch.__version__}: val_loss {total / count:.4f} after {args.steps} steps, "
          f"training {train_s:.1f} s, total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
