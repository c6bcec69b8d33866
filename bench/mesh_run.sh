# Sourced by bench/data_parallel.sh and bench/tensor_parallel.sh: run NP [--set ...] starts bench/data_parallel
# under mpirun as the mpi tests run it (one node, no network), on configs/default.toml with $model, 4 sequences per
# micro-batch and $steps measured steps, from the build directory $build.
run() {
  local np=$1
  shift
  OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --allow-run-as-root --oversubscribe --mca btl self,vader \
    -np "$np" "$build/bench/data_parallel" configs/default.toml --steps "$steps" $model --set train.batch_size=4 "$@"
}
