#!/usr/bin/env bash
# The pipeline figures of docs/benchmarks.md: bench/pipeline under mpirun on the default config's GPT (width 256,
# byte vocabulary, context 128) with 8 layers, 4 sequences per micro-batch, 8 micro-batches per step, one thread
# per rank, for each schedule at pp = 2 (one core per stage) and pp = 4 (two stages per core: there the bubble
# measures time slicing as much as the schedule, and only the memory columns are about the method); then ZeRO
# stages 1-3 on dp 2 x pp 2 (four ranks on two cores: only the memory lines are about the method).
# Open MPI's shared-memory transport cuts messages into 32 KiB fragments and moves one only inside an MPI call,
# which a stage makes between layers; 256 KiB fragments let a 512 KiB activation cross in two.
# Usage: bench/pipeline.sh [BUILD_DIR] [STEPS]
set -euo pipefail
build=${1:-build}
steps=${2:-3}
run() {
  local np=$1
  shift
  OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --allow-run-as-root --oversubscribe --mca btl self,vader \
    --mca btl_vader_max_send_size 262144 -np "$np" "$build/bench/pipeline" configs/default.toml --steps "$steps" \
    --set model.n_layer=8 --set train.batch_size=4 --set train.grad_accum=8 --set parallel.pp="$np" "$@"
}
for pp in 2 4; do
  run $pp --set parallel.pp_schedule=gpipe
  run $pp --set parallel.pp_schedule=1f1b
  run $pp --set parallel.pp_schedule=interleaved --set parallel.pp_chunks=2
  run $pp --set parallel.pp_schedule=zb-h1
done
for schedule in 1f1b zb-h1; do
  for stage in 1 2 3; do
    run 4 --set parallel.pp=2 --set parallel.dp=2 --set zero.stage=$stage --set parallel.pp_schedule=$schedule
  done
done
