#!/usr/bin/env bash
# Stop what scripts/slurm-up.sh started, by PID (slurmd, slurmctld, and munged when it started it),
# and remove DIR when it is under /tmp. Usage: scripts/slurm-down.sh DIR
set -uo pipefail
DIR=${1:?usage: slurm-down.sh DIR}
stop() {  # pidfile
  [ -s "$1" ] || return 0
  local pid; pid=$(cat "$1")
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null; true
}
stop "$DIR/slurmd.pid"      # slurmd first: it kills running job steps (slurmstepd) on TERM
stop "$DIR/slurmctld.pid"
stop "$DIR/munged.pid"      # only if slurm-up.sh started it
case "$DIR" in /tmp/*) rm -rf "$DIR" ;; *) echo "kept $DIR (not under /tmp)" >&2 ;; esac
