#!/usr/bin/env bash
# The optimizer figures of docs/benchmarks.md: state bytes per parameter (allocator and plan) and optimizer step
# time on the 10.8M GPT (6 layers, 6 heads, width 384, context 256, byte vocabulary) and configs/llama_tiny.toml;
# then validation loss after STEPS steps of configs/shakespeare_char.toml for each optimizer at four learning
# rates, with the mean step time over the last logging window.
# Usage: [SPECS="adamw sltrain ..."] bench/optimizers.sh [BUILD_DIR] [STEPS]
set -euo pipefail
build=${1:-build}
steps=${2:-500}
"$build/bench/optimizers" configs/default.toml --set model.n_layer=6 --set model.n_head=6 --set model.n_embd=384 \
  --set model.block_size=256
"$build/bench/optimizers" configs/llama_tiny.toml
# Each optimizer at learning rates 1e-3, 3e-3, 1e-2 and 3e-2 (min_lr = lr / 10): the published low-rank recipes
# train at 10x AdamW's rate, so each is compared at its best rate with AdamW at its own. GaLore and APOLLO at rank 32
# (a quarter of the width, the papers' ratio), APOLLO-Mini at rank 1 with scale 128.
# zo_sgd (one random direction a step) at rates ten times lower; LISA: AdamW on 2 of the 4 blocks (drawn every 20
# steps) besides the embeddings and the final norm. SLTrain: AdamW on its factors, r = 32 (a quarter of the width),
# delta = 0.03, alpha = 32 (the paper's smallest model's ratios).
specs=${SPECS:-adamw adamw8bit adafactor apollo:32 apollo_mini galore_adamw:32 smmf coap_adamw:32 zo_sgd lisa sltrain}
for spec in $specs; do
  name=${spec%%:*}
  extra=()
  [ "$spec" != "$name" ] && extra=(--set optim.rank="${spec#*:}")
  [ "$name" = lisa ] && name=adamw && extra=(--set optim.lisa_layers=2 --set optim.lisa_interval=20)
  [ "$name" = sltrain ] && name=adamw && extra=(--set model.sltrain_rank=32 --set model.sltrain_delta=0.03
                                                --set model.sltrain_alpha=32)
  lrs="1e-3 3e-3 1e-2 3e-2"
  [ "$name" = zo_sgd ] && lrs="1e-4 3e-4 1e-3 3e-3"
  for lr in $lrs; do
    out=$(mktemp -d)
    min=$(python3 -c "print($lr / 10)")
    "$build/memtrain" train configs/shakespeare_char.toml --set optim.name="$name" "${extra[@]}" --set optim.lr="$lr" \
      --set optim.min_lr="$min" --set train.max_steps="$steps" --set optim.decay_steps="$steps" \
      --set train.eval_interval=0 --set output.samples=0 --set output.dir="$out" |
      grep -E "^step +$steps/|val_loss" | tail -2 | sed "s/^/$spec lr $lr: /"
    rm -rf "$out"
  done
done
