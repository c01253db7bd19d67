#!/usr/bin/env bash
# Start a throwaway single-node Slurm (munged + slurmctld + slurmd) on this machine, for the tests
# of --executor slurm (tests/interop/test_cluster.py) and for trying it by hand.
#
# Usage: scripts/slurm-up.sh [DIR]   (default: a new dir under /tmp). Prints "export SLURM_CONF=DIR/slurm.conf".
# Installs Debian's slurm-wlm and munge when missing (root, apt). Writes a minimal slurm.conf to DIR:
# proctrack/linuxproc, task/none, select/cons_tres with CR_Core_Memory, no accounting, a 1 s
# scheduler interval, the node with this machine's cores and 90% of its memory. Stop it with
# scripts/slurm-down.sh DIR (by PID).
# Env: SLURMCTLD_PORT (16817), SLURMD_PORT (16818), SLURM_MIN_JOB_AGE (300), SLURM_UP_TIMEOUT (60 s).
set -euo pipefail
DIR=${1:-$(mktemp -d /tmp/dsk-slurm.XXXXXX)}
mkdir -p "$DIR"/{state,spool,log}
DIR=$(cd "$DIR" && pwd)
CTLD_PORT=${SLURMCTLD_PORT:-16817}
SLURMD_PORT=${SLURMD_PORT:-16818}
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))

# 1. packages (15 s here)
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if [ "$(id -u)" != 0 ]; then echo "slurm-up.sh: slurm-wlm and munge are not installed and this is not root — apt-get install slurm-wlm munge" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q slurm-wlm munge >"$DIR/log/apt.log" 2>&1 \
    || { apt-get update -qq >>"$DIR/log/apt.log" 2>&1 && apt-get install -y -q slurm-wlm munge >>"$DIR/log/apt.log" 2>&1; } \
    || { echo "slurm-up.sh: apt-get install slurm-wlm munge failed; see $DIR/log/apt.log" >&2; exit 1; }
fi

# 2. munge: key (the package's postinst normally creates it), run dir, daemon as the munge user
if [ ! -s /etc/munge/munge.key ]; then
  (mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f) >/dev/null
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 755 /run/munge
if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  echo "munged already running: reusing it" >&2
else
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  cp /run/munge/munged.pid "$DIR/munged.pid"     # ours: slurm-down.sh stops it
fi

# 3. slurm.conf
cat >"$DIR/slurm.conf" <<CONF
ClusterName=dsktest
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
ReturnToService=2
MpiDefault=none
MaxArraySize=1001
MinJobAge=${SLURM_MIN_JOB_AGE:-300}
DefMemPerCPU=1024
KillWait=5
InactiveLimit=0
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$DIR/slurm.conf"

# 4. daemons (they daemonise; their PIDs in the pid files)
/usr/sbin/slurmctld -f "$SLURM_CONF"
/usr/sbin/slurmd -f "$SLURM_CONF" -N "$HOST"

# 5. wait for the node to be idle
start=$(date +%s%N)
st=
for _ in $(seq $(( ${SLURM_UP_TIMEOUT:-60} * 5 ))); do
  st=$(sinfo -h -o %t 2>/dev/null || true)
  [ "$st" = idle ] && break
  sleep 0.2
done
if [ "$st" != idle ]; then
  echo "slurm-up.sh: the node is not idle (state '$st'); logs in $DIR/log" >&2; tail -5 "$DIR"/log/*.log >&2; exit 1
fi
echo "slurm idle after $(( ($(date +%s%N) - start) / 1000000 )) ms (dir $DIR)" >&2
echo "export SLURM_CONF=$SLURM_CONF"
