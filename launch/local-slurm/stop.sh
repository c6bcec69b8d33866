#!/usr/bin/env bash
# Stops the cluster launch/local-slurm/start.sh started in DIR: cancels its jobs and waits for an empty queue (a
# slurmstepd orphaned by a killed slurmd ignores SIGTERM), then stops slurmd and slurmctld by their pid files.
# munged is left running (other clusters on the machine may use it).
# Usage: launch/local-slurm/stop.sh [DIR (default /tmp/memtrain-slurm)]
set -uo pipefail
dir=$(realpath -m "${1:-/tmp/memtrain-slurm}")
export SLURM_CONF="$dir/slurm.conf"
if [ -f "$SLURM_CONF" ]; then
  scancel --full --quiet --user="$(id -un)" 2>/dev/null
  for _ in $(seq 100); do
    [ -z "$(squeue -h 2>/dev/null)" ] && break
    sleep 0.2
  done
fi
for daemon in slurmd slurmctld; do
  pid_file="$dir/$daemon.pid"
  [ -f "$pid_file" ] || continue
  pid=$(cat "$pid_file")
  kill "$pid" 2>/dev/null
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  rm -f "$pid_file"
done
