# Sourced by launch/mpirun.sh and launch/srun.sh: finding the binary, checking the config once, and passing stop
# signals on to the training ranks.

# memtrain: $MEMTRAIN_BINARY, else the repository's build/memtrain, else the one on PATH.
memtrain_binary() {
  local repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [ -n "${MEMTRAIN_BINARY:-}" ]; then echo "$MEMTRAIN_BINARY"
  elif [ -x "$repo/build/memtrain" ]; then echo "$repo/build/memtrain"
  else command -v memtrain || { echo "launch: no memtrain binary (build it, or set MEMTRAIN_BINARY)" >&2; return 2; }
  fi
}

# Checks CONFIG and its overrides once, in this process, for WORLD ranks before anything is started: an unknown
# key, a bad value or a mesh that does not fit the ranks is one clear error here instead of one per rank later.
# Usage: check_config BINARY WORLD CONFIG [--set k=v ...]
check_config() {
  local binary=$1 world=$2
  shift 2
  "$binary" plan "$@" --world-size "$world" >/dev/null
}

# Whether the arguments after KEY set it (--set KEY=... or --set=KEY=...). Usage: sets_key KEY ARGS...
sets_key() {
  local key=$1 arg
  shift
  for arg in "$@"; do
    case $arg in "$key="*|"--set=$key="*) return 0 ;; esac
  done
  return 1
}

# Runs "$@" in the background and waits for it, passing SIGTERM and SIGUSR1 on as SIGUSR1 (mpirun and srun forward
# SIGUSR1 to every rank; memtrain then saves a checkpoint at the next step boundary and exits with 3; a second
# signal makes the ranks exit at once). Returns the command's exit status.
run_forwarding_stop_signals() {
  "$@" &
  local child=$!
  trap 'kill -USR1 "$child" 2>/dev/null' USR1 TERM
  local rc
  while true; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break  # wait returned for a trapped signal: the child still runs
  done
  trap - USR1 TERM
  return "$rc"
}
