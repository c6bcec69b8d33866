#!/usr/bin/env bash
# The tensor- and context-parallel figures of docs/benchmarks.md: bench/data_parallel under mpirun on a 10.8M GPT (6 layers,
# 8 heads, width 384, context 256, byte vocabulary), 4 sequences per micro-batch, at tp = 1, 2, 4 and at tp = 2 x
# dp = 2 with ZeRO-2, without and with sequence parallelism. One thread per rank.
# Usage: bench/tensor_parallel.sh [BUILD_DIR] [STEPS]
set -euo pipefail
build=${1:-build}
steps=${2:-3}
model="--set model.n_layer=6 --set model.n_head=8 --set model.n_embd=384 --set model.block_size=256"
source "$(dirname "$0")/mesh_run.sh"
for sp in false true; do
  for tp in 1 2 4; do run "$tp" --set parallel.tp=$tp --set parallel.sequence_parallel=$sp; done
  run 4 --set parallel.tp=2 --set zero.stage=2 --set parallel.sequence_parallel=$sp
done
# Context parallelism: cp = 2, 4 alone, and tp = 2 x cp = 2 x dp = 2 with ZeRO-2.
run 2 --set parallel.cp=2
run 4 --set parallel.cp=4
run 8 --set parallel.tp=2 --set parallel.cp=2 --set zero.stage=2
