#!/usr/bin/env bash
# The optimizer figures of docs/benchmarks.md: state bytes per parameter (allocator and plan) and optimizer step
# time on the 10.8M GPT (6 layers, 6 heads, width 384, context 256, byte vocabulary) and configs/llama_tiny.toml;
# then validation loss after STEPS steps of configs/shakespeare_char.toml for each optimizer, with the mean step
# time over the last logging window.
# Usage: bench/optimizers.sh [BUILD_DIR] [STEPS]
set -euo pipefail
build=${1:-build}
steps=${2:-500}
"$build/bench/optimizers" configs/default.toml --set model.n_layer=6 --set model.n_head=6 --set model.n_embd=384 \
  --set model.block_size=256
"$build/bench/optimizers" configs/llama_tiny.toml
for name in adamw adamw8bit adafactor apollo apollo_mini; do
  out=$(mktemp -d)
  "$build/memtrain" train configs/shakespeare_char.toml --set optim.name=$name --set train.max_steps="$steps" \
    --set optim.decay_steps="$steps" --set train.eval_interval=0 --set output.samples=0 --set output.dir="$out" |
    grep -E "^step +$steps/|val_loss" | tail -2 | sed "s/^/$name: /"
  rm -rf "$out"
done
