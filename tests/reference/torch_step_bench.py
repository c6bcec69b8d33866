#!/usr/bin/python3
"""The PyTorch side of bench/cpu_step: the same GPT-2-style training step as memtrain's (6 layers, 6 heads, width
384, vocab 128, batch 8 x 256, AdamW) using the reference model of torch_reference.py, in float32.

Prints a first line describing torch, then "median_ms X" over --steps steps after one warm-up step.
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import gpt2_forward, gpt2_param_names  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = {"n_layer": 6, "n_head": 6, "n_embd": 384, "vocab_size": 128, "block_size": 256, "bias": True,
           "tied": True, "norm_eps": 1e-5}
    C, V, L = cfg["n_embd"], cfg["vocab_size"], cfg["n_layer"]
    shapes = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (cfg["block_size"], C),
              "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
    for l in range(L):
        p = f"transformer.h.{l}."
        shapes.update({p + "ln_1.weight": (C,), p + "ln_1.bias": (C,), p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
                       p + "attn.c_attn.weight": (C, 3 * C), p + "attn.c_attn.bias": (3 * C,),
                       p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
                       p + "mlp.c_fc.weight": (C, 4 * C), p + "mlp.c_fc.bias": (4 * C,),
                       p + "mlp.c_proj.weight": (4 * C, C), p + "mlp.c_proj.bias": (C,)})
    P = {}
    for name in gpt2_param_names(cfg):
        shape = shapes[name]
        t = torch.randn(shape) * 0.02 if len(shape) == 2 else (torch.ones(shape) if "ln" in name else torch.zeros(shape))
        P[name] = t.requires_grad_(True)
    opt = torch.optim.AdamW(list(P.values()), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    B, T = 8, 256
    tokens = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    torch.randn(64, 64) @ torch.randn(64, 64)  # loads the BLAS, so the process map shows which one
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line}
    blas = ", ".join(sorted(os.path.basename(x) for x in libs)) or "no BLAS library mapped"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {blas}")
    times = []
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = gpt2_forward(P, cfg, tokens)
        loss = F.cross_entropy(logits.view(-1, V), targets.view(-1))
        loss.backward()
        opt.step()
        if step > 0:
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    print(f"median_ms {times[len(times) // 2]:.3f}")


if __name__ == "__main__":
    main()
