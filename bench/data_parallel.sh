#!/usr/bin/env bash
# The data-parallel figures of docs/benchmarks.md: bench/data_parallel under mpirun on the 10.8M GPT (6 layers,
# 6 heads, width 384, context 256, byte vocabulary), 4 sequences per rank, at dp = 1, 2, 4, 8 and ZeRO stages 0-3,
# plus hpZ and qwZ at dp = 4. One thread per rank. Usage: bench/data_parallel.sh [BUILD_DIR] [STEPS]
set -euo pipefail
build=${1:-build}
steps=${2:-3}
model="--set model.n_layer=6 --set model.n_head=6 --set model.n_embd=384 --set model.block_size=256"
source "$(dirname "$0")/mesh_run.sh"
for np in 1 2 4 8; do
  for stage in 0 1 2 3; do run "$np" --set zero.stage=$stage; done
done
run 4 --set zero.stage=3 --set zero.hpz_partition_size=2
run 4 --set zero.stage=3 --set zero.quantized_weights=true
