#!/usr/bin/env bash
# Runs `memtrain train CONFIG` over the current Slurm allocation (from sbatch, e.g. launch/slurm.sbatch, or salloc):
# one rank per task through `srun --mpi=pmix`, the mesh filled from the task count (parallel.dp = -1 takes the
# rest), and, when snapshots are on, each node's snapshot keeper as a step of its own, so it outlives a failed
# training step: MEMTRAIN_RESTARTS > 0 starts the training again within the allocation, and it resumes from the
# newest in-memory snapshot (or checkpoint) instead of the disk.
#
# Usage: launch/srun.sh CONFIG [--set section.key=value ...]
# Environment: MEMTRAIN_BINARY (default: build/memtrain of this repository, else memtrain on PATH);
#   MEMTRAIN_RESTARTS (default 0): how many times a failed training step is started again;
#   MEMTRAIN_SRUN_ARGS: more srun options for the training step (word-split).
# Threads per rank: --cpus-per-task when the allocation sets it (train.threads, OMP_NUM_THREADS), else memtrain's
# default (the node's cores shared by its ranks).
# Exit status: memtrain's: 0 done, 2 bad config or arguments, 3 stopped by SIGUSR1/SIGTERM after saving a
# checkpoint (requeue and resume), anything else failed. SIGUSR1 or SIGTERM sent to this script reaches every rank
# as SIGUSR1.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[ $# -ge 1 ] && [[ $1 != -* ]] || { sed -n '8,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ -n "${SLURM_JOB_ID:-}" ] || { echo "srun.sh: not inside a Slurm allocation (sbatch launch/slurm.sbatch, or salloc)" >&2; exit 2; }
restarts=${MEMTRAIN_RESTARTS:-0}
[[ $restarts =~ ^[0-9]+$ ]] || { echo "srun.sh: MEMTRAIN_RESTARTS: not a number: '$restarts'" >&2; exit 2; }
binary=$(memtrain_binary) || exit 2
tasks=${SLURM_NTASKS:?srun.sh: the allocation has no task count}
nodes=${SLURM_JOB_NUM_NODES:-1}
args=("$@")
if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
  export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK OPENBLAS_NUM_THREADS=$SLURM_CPUS_PER_TASK
  sets_key train.threads "${args[@]}" || args+=(--set "train.threads=$SLURM_CPUS_PER_TASK")
fi
check_config "$binary" "$tasks" "${args[@]}" || exit $?

# One keeper per node (it exits at once when snapshots are off); the ranks find it by its socket. Waited for, so
# that no rank starts one of its own inside the training step, which a failed step would take down with it.
keeper_log=$(mktemp "${TMPDIR:-/tmp}/memtrain-keepers.XXXXXX")
srun --overlap --nodes="$nodes" --ntasks="$nodes" --ntasks-per-node=1 --kill-on-bad-exit=0 \
  "$binary" keeper "${args[@]}" >"$keeper_log" 2>&1 &
keepers=$!
for _ in $(seq 300); do
  grep -q "snapshots are off" "$keeper_log" && break
  [ "$(grep -c "memtrain keeper: serving" "$keeper_log")" -ge "$nodes" ] && break
  kill -0 "$keepers" 2>/dev/null || break
  sleep 0.1
done
grep -v "memtrain keeper: serving\|snapshots are off" "$keeper_log" >&2  # anything else is a keeper's complaint

attempt=0
while true; do
  # shellcheck disable=SC2086  # MEMTRAIN_SRUN_ARGS is a list of options
  run_forwarding_stop_signals srun --mpi=pmix --kill-on-bad-exit=1 ${MEMTRAIN_SRUN_ARGS:-} \
    "$binary" train "${args[@]}" --set train.resume=auto
  rc=$?
  case $rc in 0|2|3) break ;; esac
  [ "$attempt" -lt "$restarts" ] || break
  attempt=$((attempt + 1))
  echo "srun.sh: the training step failed (exit $rc); starting it again ($attempt of $restarts)" >&2
done
# The keepers end on their own once their ranks left them holding nothing (a finished run) or after
# snapshot.keeper_timeout_s; the allocation's end stops them in any case.
rm -f "$keeper_log"
exit "$rc"
