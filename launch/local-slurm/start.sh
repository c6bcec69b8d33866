#!/usr/bin/env bash
# Starts a single-node Slurm cluster on this machine (munged, slurmctld, slurmd; no systemd, no cgroups), for the
# launch tests and for trying launch/slurm.sbatch locally. Installs Debian's packages first when they are missing.
# Everything Slurm keeps (configuration, state, logs, pid files) lives under DIR; point every client command and job
# at it with SLURM_CONF, which the script prints. The node declares CPUS processors whatever the machine has, so
# jobs may ask for more tasks than cores (they share them).
# Usage: launch/local-slurm/start.sh [DIR (default /tmp/memtrain-slurm)] [CPUS (default 8)]
# Stop it with launch/local-slurm/stop.sh DIR.
set -euo pipefail
dir=$(realpath -m "${1:-/tmp/memtrain-slurm}")
cpus=${2:-8}

packages=(slurmctld slurmd slurm-client munge libpmix-dev)  # libpmix-dev: Slurm's PMIx plugin needs a file from it
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

mkdir -p "$dir"/{state,spool,log}
conf="$dir/slurm.conf"
node=$(hostname -s)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cat > "$conf" <<CONF
# Written by launch/local-slurm/start.sh: one node, root daemons, no cgroups, no accounting.
ClusterName=memtrain
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job is held for cred_expire + 1 s (121 s by default); 5 is the smallest value accepted.
AuthInfo=cred_expire=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=pmix
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerParameters=sched_interval=1,bf_interval=1
ReturnToService=2
# More CPUs than the machine has: tasks share the cores rather than pend forever.
SlurmdParameters=config_overrides
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

# munged runs as the munge user with /run/munge its own.
if ! pgrep -x munged >/dev/null; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged
fi
export SLURM_CONF="$conf"
for daemon in slurmctld slurmd; do
  pid_file="$dir/$daemon.pid"
  if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then continue; fi
  "/usr/sbin/$daemon" -f "$conf"
done
for _ in $(seq 100); do
  state=$(sinfo -h -N -o '%t' 2>/dev/null | head -1 || true)
  [ "$state" = "idle" ] && break
  [ "${state%\*}" = "down" ] && scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
  sleep 0.2
done
if [ "$(sinfo -h -N -o '%t' 2>/dev/null | head -1)" != "idle" ]; then
  echo "local-slurm: the node did not come up; see $dir/log" >&2
  exit 1
fi
echo "export SLURM_CONF=$conf"
