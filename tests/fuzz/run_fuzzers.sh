#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan, in build-fuzz) and runs each for DURATION seconds (default 30)
# on a copy of its seed corpus in tests/fuzz/corpus/<target>/ (the repository's corpus never grows). Prints one
# line per target and a total; exits non-zero if any target crashed, naming the saved crash input.
#   usage: tests/fuzz/run_fuzzers.sh [DURATION]        (make fuzz FUZZ_SECONDS=30 runs it)
#   env:   FUZZ_BUILD (build dir, default <repo>/build-fuzz), FUZZ_JOBS (build jobs, default nproc),
#          FUZZ_ARTIFACTS (where crash inputs are kept, default <build>/fuzz-artifacts), FUZZ_TARGETS (a subset)
set -euo pipefail

duration=${1:-30}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${FUZZ_BUILD:-$root/build-fuzz}
jobs=${FUZZ_JOBS:-$(nproc)}
artifacts=${FUZZ_ARTIFACTS:-$build/fuzz-artifacts}

# target:max_len. max_len fits each format: a config of every section with overrides, a shard header plus a few
# hundred tokens, a safetensors header naming a handful of tensors plus their data.
all_targets=(fuzz_config:4096 fuzz_token_shard:1024 fuzz_token_shard_repaired:1024 fuzz_safetensors:4096)
selected=${FUZZ_TARGETS:-}

CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMEMTRAIN_FUZZ=ON -DMEMTRAIN_SANITIZE=address,undefined >/dev/null
names=()
for t in "${all_targets[@]}"; do
  name=${t%%:*}
  if [ -z "$selected" ] || [[ " $selected " == *" $name "* ]]; then names+=("$name"); fi
done
cmake --build "$build" -j "$jobs" --target "${names[@]}"

mkdir -p "$artifacts"
work=$(mktemp -d "${TMPDIR:-/tmp}/memtrain_fuzz_run.XXXXXX")
# The targets' scratch files (see fuzz_util.h) go to a directory of this run, in RAM where possible, so that a
# crashed target leaves nothing behind.
scratch=$(mktemp -d /dev/shm/memtrain_fuzz_scratch.XXXXXX 2>/dev/null || mktemp -d "$work/scratch.XXXXXX")
trap 'rm -rf "$work" "$scratch"' EXIT
export MEMTRAIN_FUZZ_TMPDIR=$scratch
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

total_runs=0
crashed=()
for t in "${all_targets[@]}"; do
  name=${t%%:*}
  max_len=${t##*:}
  if [ -n "$selected" ] && [[ " $selected " != *" $name "* ]]; then continue; fi
  mkdir -p "$work/$name"
  cp -r "$root/tests/fuzz/corpus/$name/." "$work/$name/"
  log="$work/$name.log"
  status=0
  "$build/fuzz/$name" -max_total_time="$duration" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/$name-" "$work/$name" >"$log" 2>&1 || status=$?
  runs=$(awk '/^stat::number_of_executed_units:/ {print $2}' "$log")
  secs=$(awk '/^Done [0-9]+ runs in/ {print $5}' "$log")
  runs=${runs:-0}
  total_runs=$((total_runs + runs))
  if [ "$status" -eq 0 ]; then
    echo "fuzz $name: $runs executions in ${secs:-$duration} s, 0 crashes"
  else
    crashed+=("$name")
    echo "fuzz $name: $runs executions, CRASHED (exit $status); last lines of its log:"
    tail -n 60 "$log" | sed 's/^/    /'
    grep -h "Test unit written to" "$log" | sed "s/^.*Test unit written to /fuzz $name: crash input saved as /" || true
  fi
done

echo "fuzz total: $total_runs executions, ${#crashed[@]} crashing targets${crashed:+ (${crashed[*]})}"
[ ${#crashed[@]} -eq 0 ]
