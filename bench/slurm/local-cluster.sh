#!/usr/bin/env bash
# A private single-node Slurm cluster in one directory, for tests and trying the job scripts:
# its own munge key and socket, slurmctld and slurmd on ports 16817/16818, state and logs under
# DIR. Needs Debian's `slurm-wlm` and `munge` and root (slurmd launches the jobs).
#
#   bench/slurm/local-cluster.sh start DIR   # prints SLURM_CONF=DIR/slurm.conf
#   bench/slurm/local-cluster.sh stop DIR
set -euo pipefail
cmd=${1:?start or stop}
dir=$(mkdir -p "${2:?directory}" && cd "$2" && pwd)
conf=$dir/slurm.conf
case "$cmd" in
  start)
    for b in munged slurmctld slurmd sbatch; do
      command -v "$b" >/dev/null || { echo "$b not found: apt-get install slurm-wlm munge" >&2; exit 1; }
    done
    mkdir -p "$dir/state" "$dir/spool" "$dir/log"
    [ -e "$dir/munge.key" ] || head -c 1024 /dev/urandom > "$dir/munge.key"
    chmod 600 "$dir/munge.key"
    munged --force --key-file="$dir/munge.key" --socket="$dir/munge.sock" \
      --pid-file="$dir/munged.pid" --seed-file="$dir/munged.seed" --log-file="$dir/log/munged.log"
    host=$(hostname)
    cat > "$conf" <<CONF
ClusterName=advox-local
SlurmctldHost=$host
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    SLURM_CONF=$conf slurmctld -f "$conf"
    SLURM_CONF=$conf slurmd -f "$conf"
    for _ in $(seq 50); do
      if SLURM_CONF=$conf sinfo -h -o %t 2>/dev/null | grep -q idle; then
        echo "SLURM_CONF=$conf"
        exit 0
      fi
      sleep 0.2
    done
    echo "the local cluster did not come up; logs in $dir/log" >&2
    exit 1
    ;;
  stop)
    SLURM_CONF=$conf scontrol shutdown >/dev/null 2>&1 || true
    for p in slurmd slurmctld munged; do
      [ -e "$dir/$p.pid" ] && kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
    done
    ;;
  *) echo "start or stop" >&2; exit 1 ;;
esac
