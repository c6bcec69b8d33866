#!/usr/bin/env bash
# The context-parallel figure of docs/benchmarks.md: the longest sequence one can train on 8 ranks under a fixed
# per-rank memory budget, at cp = 1, 2, 4 and 8 (dp = 8 / cp, ZeRO-2 over dp x cp, so the model states per rank are
# the same at every cp). A small LLaMA (2 layers, 4 heads, 2 kv heads, width 64, byte vocabulary; RoPE, so the
# context is not bounded by a position table), one sequence per rank.
# For each cp, `memtrain plan` finds the longest sequence (a multiple of 256 tokens) whose predicted peak fits the
# budget; then that length is trained for 2 steps under mpirun with memory.budget set (it must run, and rank 0's
# measured peaks are printed), and 256 tokens more is tried too.
# Usage: bench/context_parallel.sh [BUILD_DIR] [BUDGET]
set -euo pipefail
build=${1:-build}
budget=${2:-32MiB}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
model="configs/default.toml --set model.arch=llama --set model.n_layer=2 --set model.n_head=4 --set model.n_kv_head=2
  --set model.n_embd=64 --set train.batch_size=1 --set zero.stage=2 --set memory.budget=$budget
  --set train.max_steps=2 --set train.log_interval=1 --set train.eval_interval=0 --set train.eval_batches=1
  --set train.threads=1 --set output.samples=0 --set output.save_weights=false --set output.dir=$out/run"
fits() {  # fits T CP
  "$build/memtrain" plan $model --set model.block_size="$1" --set parallel.cp="$2" --world-size 8 --json |
    grep -q '"fits":true'
}
train() {  # train T CP
  OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --allow-run-as-root --oversubscribe --mca btl self,vader \
    -np 8 "$build/memtrain" train $model --set model.block_size="$1" --set parallel.cp="$2" > "$out/log" 2>&1
}
echo "budget $budget per rank, 8 ranks"
for cp in 1 2 4 8; do
  lo=0 hi=256
  while fits $hi $cp; do lo=$hi; hi=$((hi * 2)); done
  while [ $((hi - lo)) -gt 256 ]; do
    mid=$(((lo + hi) / 512 * 256))
    if fits $mid $cp; then lo=$mid; else hi=$mid; fi
  done
  if ! train $lo $cp; then echo "cp=$cp: T=$lo failed to train"; cat "$out/log"; exit 1; fi
  peaks=$(head -1 "$out/run/metrics.jsonl" | python3 -c '
import json, sys
mem = json.load(sys.stdin)["mem"]
print("sum of category peaks %.2f MiB (activations %.2f, communication %.2f, workspace %.2f)" % (
    sum(mem.values()) / 2**20, mem["activations"] / 2**20, mem["communication"] / 2**20, mem["workspace"] / 2**20))')
  # The plan adds each category's peak; they need not coincide (the head's logits chunk is freed before backward
  # peaks), so a somewhat longer sequence may still train.
  if train $((lo + 256)) $cp; then over="also trains"
  elif grep -q "memory.budget" "$out/log"; then over="stops: memory.budget exceeded"
  else echo "cp=$cp: T=$((lo + 256)) failed otherwise"; cat "$out/log"; exit 1; fi
  echo "cp=$cp dp=$((8 / cp)): longest T = $lo tokens; trained 2 steps, rank 0 $peaks; T = $((lo + 256)) $over"
done
