#!/usr/bin/env bash
# Starts `memtrain train CONFIG` under Open MPI's mpirun, on this machine or on the hosts of a hostfile.
#
# Usage: launch/mpirun.sh [options] CONFIG [--set section.key=value ...] [-- more mpirun options]
#   -n N                 ranks in all (default: R x the hostfile's hosts; without a hostfile, R)
#   --ranks-per-node R   ranks on each host of the hostfile (default 1; without a hostfile all N run here)
#   --threads T          threads per rank: train.threads, OMP_NUM_THREADS and OPENBLAS_NUM_THREADS (default: this
#                        machine's cores / R; memtrain's own default when they do not divide)
#   --hostfile FILE      Open MPI hostfile ("host slots=R" lines); without one every rank runs here
#   --bind core|none     bind each rank to T cores (default core; none when R x T exceeds this machine's cores)
# Environment: MEMTRAIN_BINARY (default: build/memtrain of this repository, else memtrain on PATH).
# Exit status: memtrain's: 0 done, 2 bad config or arguments, 3 stopped by SIGTERM/SIGUSR1 after saving a checkpoint
# (rerun with train.resume = "auto" to continue), anything else failed. SIGTERM or SIGUSR1 sent to this script
# reaches every rank as SIGUSR1 (mpirun itself would kill them on SIGTERM); a second one stops them at once.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
usage() { sed -n '4,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

np=0 per_node=0 threads=0 hostfile="" bind=core
config="" overrides=() extra=()
while [ $# -gt 0 ]; do
  case $1 in
    -n|--np) np=${2:?-n needs a value}; shift 2 ;;
    --ranks-per-node) per_node=${2:?--ranks-per-node needs a value}; shift 2 ;;
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    --hostfile) hostfile=${2:?--hostfile needs a value}; shift 2 ;;
    --bind) bind=${2:?--bind needs a value}; shift 2 ;;
    --set) overrides+=(--set "${2:?--set needs section.key=value}"); shift 2 ;;
    --set=*) overrides+=(--set "${1#--set=}"); shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) usage ;;
    -*) echo "mpirun.sh: unknown option $1" >&2; usage ;;
    *) [ -z "$config" ] || { echo "mpirun.sh: one CONFIG only ($config, $1)" >&2; exit 2; }; config=$1; shift ;;
  esac
done
[ -n "$config" ] || usage
for v in "$np" "$per_node" "$threads"; do
  [[ $v =~ ^[0-9]+$ ]] || { echo "mpirun.sh: not a number: '$v'" >&2; exit 2; }
done
case $bind in core|none) ;; *) echo "mpirun.sh: --bind core or none, not '$bind'" >&2; exit 2 ;; esac
if [ -n "$hostfile" ]; then
  [ -r "$hostfile" ] || { echo "mpirun.sh: cannot read the hostfile $hostfile" >&2; exit 2; }
  hosts=$(grep -cv '^[[:space:]]*\(#\|$\)' "$hostfile")
  [ "$per_node" -gt 0 ] || per_node=1
  [ "$np" -gt 0 ] || np=$((per_node * hosts))
else  # every rank on this machine
  [ "$np" -gt 0 ] || np=$((per_node > 0 ? per_node : 1))
  per_node=$np
fi
cores=$(nproc --all)
[ "$threads" -gt 0 ] || threads=$((cores / per_node))  # 0 when the ranks outnumber the cores: memtrain's default
binary=$(memtrain_binary) || exit 2
check_config "$binary" "$np" "$config" "${overrides[@]}" || exit $?

args=(-np "$np")
[ -n "$hostfile" ] && args+=(--hostfile "$hostfile")
if [ "$threads" -gt 0 ]; then
  args+=(-x "OMP_NUM_THREADS=$threads" -x "OPENBLAS_NUM_THREADS=$threads")
  sets_key train.threads "${overrides[@]}" || overrides+=(--set "train.threads=$threads")
fi
if [ "$bind" = core ] && [ "$threads" -gt 0 ] && [ $((per_node * threads)) -le "$cores" ]; then
  args+=(--map-by "ppr:$per_node:node:PE=$threads" --bind-to core)
else
  args+=(--map-by "ppr:$per_node:node" --bind-to none)
fi
[ -z "$hostfile" ] && [ "$np" -gt "$cores" ] && args+=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && args+=(--allow-run-as-root)
run_forwarding_stop_signals mpirun "${args[@]}" "${extra[@]}" "$binary" train "$config" "${overrides[@]}"
