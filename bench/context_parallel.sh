#!/usr/bin/env bash
# The long-sequence figure of docs/benchmarks.md: the longest sequence one can train on 8 ranks under a fixed
# per-rank memory budget, per technique: data parallelism alone (dp = 8) with the keep, recompute and stream
# (StreamBP) activation policies; ring attention (cp = 2, 4, 8); Ulysses (cp = cp_a2a = 8) and unified SP (cp = 8 as
# cp_a2a x ring); and rings combined with recompute. dp = 8 / cp and ZeRO-2 over dp x cp, so the model states per
# rank are the same everywhere. A small LLaMA (2 layers, 8 heads, 2 kv heads, width 64, byte vocabulary; RoPE, so
# the context is not bounded by a position table), one sequence per data-parallel rank.
# For each technique, `memtrain plan` finds the longest sequence (a multiple of 256 tokens) whose predicted peak
# fits the budget; that length is trained for 2 steps under mpirun with memory.budget set (it must run: rank 0's
# measured peaks are printed), and 256 tokens more is tried too. Then the step time of each technique at one length
# every one of them trains (STEP_T, 2,048 by default): the mean step_ms of steps 2-4 (step 1 warms up) as rank 0
# logs it. Eight ranks share this machine's cores, so the times say what each technique adds in compute and
# copies, not what a network would cost.
# Usage: bench/context_parallel.sh [BUILD_DIR] [BUDGET] [STEP_T]
set -euo pipefail
build=${1:-build}
budget=${2:-32MiB}
step_t=${3:-2048}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
model="configs/default.toml --set model.arch=llama --set model.n_layer=2 --set model.n_head=8 --set model.n_kv_head=2
  --set model.n_embd=64 --set train.batch_size=1 --set zero.stage=2 --set memory.budget=$budget
  --set train.log_interval=1 --set train.eval_interval=0 --set train.eval_batches=1
  --set train.threads=1 --set output.samples=0 --set output.save_weights=false --set output.dir=$out/run"
# label|overrides
techniques=(
  "dp 8, keep|"
  "dp 8, recompute|--set memory.activations=recompute"
  "dp 8, stream|--set memory.activations=stream --set memory.stream_chunk=256"
  "ring cp 2 x dp 4|--set parallel.cp=2"
  "ring cp 4 x dp 2|--set parallel.cp=4"
  "ring cp 8|--set parallel.cp=8"
  "Ulysses a2a 8|--set parallel.cp=8 --set parallel.cp_a2a=8"
  "USP a2a 2 x ring 4|--set parallel.cp=8 --set parallel.cp_a2a=2"
  "USP a2a 4 x ring 2|--set parallel.cp=8 --set parallel.cp_a2a=4"
  "ring cp 8 + recompute|--set parallel.cp=8 --set memory.activations=recompute"
  "ring cp 8 + stream|--set parallel.cp=8 --set memory.activations=stream --set memory.stream_chunk=256"
  "USP a2a 4 x ring 2 + recompute|--set parallel.cp=8 --set parallel.cp_a2a=4 --set memory.activations=recompute"
)
fits() {  # fits T SETS
  # shellcheck disable=SC2086
  "$build/memtrain" plan $model $2 --set model.block_size="$1" --world-size 8 --json | grep -q '"fits":true'
}
train() {  # train T STEPS SETS
  # shellcheck disable=SC2086
  OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --allow-run-as-root --oversubscribe --mca btl self,vader \
    -np 8 "$build/memtrain" train $model $3 --set model.block_size="$1" --set train.max_steps="$2" > "$out/log" 2>&1
}
peaks() {
  head -1 "$out/run/metrics.jsonl" | python3 -c '
import json, sys
mem = json.load(sys.stdin)["mem"]
print("%.2f MiB (activations %.2f, communication %.2f, workspace %.2f)" % (
    sum(mem.values()) / 2**20, mem["activations"] / 2**20, mem["communication"] / 2**20, mem["workspace"] / 2**20))'
}
step_ms() {  # the mean step_ms of the logged steps after the first
  python3 -c '
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
times = [s["step_ms"] for s in steps if "step_ms" in s][1:]
print("%.0f" % (sum(times) / len(times)))' "$out/run/metrics.jsonl"
}
echo "budget $budget per rank, 8 ranks"
for t in "${techniques[@]}"; do
  label=${t%%|*} sets=${t#*|}
  lo=0 hi=256
  while fits $hi "$sets"; do lo=$hi; hi=$((hi * 2)); done
  while [ $((hi - lo)) -gt 256 ]; do
    mid=$(((lo + hi) / 512 * 256))
    if fits $mid "$sets"; then lo=$mid; else hi=$mid; fi
  done
  if ! train $lo 2 "$sets"; then echo "$label: T=$lo failed to train"; cat "$out/log"; exit 1; fi
  p=$(peaks)
  # The plan adds each category's peak; they need not coincide (the head's logits chunk is freed before backward
  # peaks), so a somewhat longer sequence may still train.
  if train $((lo + 256)) 2 "$sets"; then over="also trains"
  elif grep -q "memory.budget" "$out/log"; then over="stops: memory.budget exceeded"
  else echo "$label: T=$((lo + 256)) failed otherwise"; cat "$out/log"; exit 1; fi
  echo "$label: longest T = $lo tokens; trained 2 steps, rank 0 sum of category peaks $p; T = $((lo + 256)) $over"
done
echo "step time at T = $step_t (mean of steps 2-4, rank 0)"
for t in "${techniques[@]}"; do
  label=${t%%|*} sets=${t#*|}
  if ! train "$step_t" 4 "$sets"; then echo "$label: T=$step_t failed to train"; cat "$out/log"; exit 1; fi
  echo "$label: $(step_ms) ms per step"
done
