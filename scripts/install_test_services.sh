#!/usr/bin/env bash
# The test suite's services, installed and started where root and apt allow it; each says in one
# line why it cannot, and the tests that need it are skipped locally (and fail in CI).
#
# - PostgreSQL: the suite starts its own throw-away server (two sweep workers share a study
#   through it); this installs Debian's server binaries.
# - SLURM: a real one-node cluster on this machine for the sweeper's SLURM tests: Debian's
#   slurm-wlm and munge, a minimal /etc/slurm/slurm.conf (this host as controller and node, one
#   default partition `debug`, no accounting, no cgroups), and munged, slurmctld and slurmd
#   started as root (directly: no systemd needed).
#
# Idempotent: what is installed stays, running daemons are left alone, and a slurm.conf that
# this script did not write is never replaced.
set -u

postgresql() {
  if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    return 0
  fi
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "PostgreSQL: installing Debian's postgresql for the sweeper's multi-worker test"
    apt_install postgresql \
      || echo "PostgreSQL: could not install it; the multi-worker sweep test will not run"
  else
    echo "PostgreSQL: not installed and apt needs root; the multi-worker sweep test will not run"
  fi
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; }
}

# -- SLURM

SLURM_CONF=/etc/slurm/slurm.conf
SLURM_MARK="# written by scripts/install_test_services.sh"
SLURM_HOST=$(hostname -s)
SLURM_SPOOL=/var/spool/slurm
SLURM_LOG=/var/log/slurm

slurm_ready() {  # the controller answers and the node takes jobs (idle, or busy with some)
  command -v sinfo >/dev/null 2>&1 \
    && timeout 10 sinfo -h -N -n "$SLURM_HOST" -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc|comp)$'
}

slurm_conf() {
  local cpus memory
  cpus=$(nproc 2>/dev/null || echo 2)
  # half the machine's memory (MB): jobs of a few GB fit, and slurmd never finds less than configured
  memory=$(awk '/^MemTotal:/ {m = int($2 / 2048); print (m < 1024 ? 1024 : m)}' /proc/meminfo)
  cat <<EOF
$SLURM_MARK: a one-node test cluster
ClusterName=sgmodtest
SlurmctldHost=$SLURM_HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$SLURM_SPOOL/ctld
SlurmdSpoolDir=$SLURM_SPOOL/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$SLURM_LOG/slurmctld.log
SlurmdLogFile=$SLURM_LOG/slurmd.log
ReturnToService=2
MaxJobCount=100000
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$SLURM_HOST CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$SLURM_HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

slurm_write_conf() {  # 0: unchanged or written; 1: a configuration of someone else's is there
  local new
  if [ -e "$SLURM_CONF" ] && ! grep -qF "$SLURM_MARK" "$SLURM_CONF"; then
    return 1
  fi
  new=$(slurm_conf)
  if [ "$(cat "$SLURM_CONF" 2>/dev/null)" != "$new" ]; then
    mkdir -p "$(dirname "$SLURM_CONF")"
    printf '%s\n' "$new" >"$SLURM_CONF.tmp" && mv "$SLURM_CONF.tmp" "$SLURM_CONF"
    if pgrep -x slurmctld >/dev/null; then
      scontrol reconfigure >/dev/null 2>&1
    fi
  fi
}

slurm_start() {  # munged, slurmctld and slurmd, each unless it runs already
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key >/dev/null 2>&1 \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  if ! pgrep -x munged >/dev/null; then
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1 || return 1
  fi
  mkdir -p "$SLURM_SPOOL/ctld" "$SLURM_SPOOL/d" "$SLURM_LOG"
  if ! pgrep -x slurmctld >/dev/null; then
    /usr/sbin/slurmctld </dev/null >/dev/null 2>&1 || return 1
  fi
  for _ in $(seq 20); do
    scontrol ping 2>/dev/null | grep -q UP && break
    sleep 1
  done
  if ! pgrep -x slurmd >/dev/null; then
    /usr/sbin/slurmd </dev/null >/dev/null 2>&1 || return 1
  fi
  local state=""
  for _ in $(seq 30); do
    state=$(sinfo -h -N -n "$SLURM_HOST" -o %t 2>/dev/null)
    case $state in
      idle | mix | alloc | comp) break ;;
      down* | drain* | drng* | fail*)  # left so by an earlier run (a restart, a missed heartbeat)
        scontrol update nodename="$SLURM_HOST" state=resume >/dev/null 2>&1 ;;
    esac
    sleep 1
  done
  slurm_ready && timeout 60 srun -N1 -t 1 true >/dev/null 2>&1
}

slurm() {
  if slurm_ready; then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "SLURM: not running here, and setting it up needs root and apt; the SLURM tests will not run"
    return 0
  fi
  if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
    || ! command -v sinfo >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    echo "SLURM: installing Debian's slurm-wlm and munge for the sweeper's SLURM tests"
    if ! apt_install slurm-wlm munge; then
      echo "SLURM: could not install slurm-wlm and munge; the SLURM tests will not run"
      return 0
    fi
  fi
  if ! slurm_write_conf; then
    echo "SLURM: $SLURM_CONF is not this script's and SLURM does not answer; left as it is, the SLURM tests will not run"
    return 0
  fi
  if slurm_start; then
    echo "SLURM: one-node cluster up on $SLURM_HOST (partition debug)"
  else
    echo "SLURM: the daemons did not come up (see $SLURM_LOG/ and /var/log/munge/); the SLURM tests will not run"
  fi
}

postgresql
slurm
