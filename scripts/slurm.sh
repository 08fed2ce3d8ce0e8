#!/usr/bin/env bash
# A throwaway one-node Slurm cluster on this machine, for the Slurm tests and CI (like scripts/postgres.sh).
#
#   scripts/slurm.sh start   # install (first time), configure and start; prints the path of slurm.conf
#   scripts/slurm.sh stop    # stop the daemons; remove $TUNELAB_SLURM_DIR to throw the state away
#
# Clients find the cluster through SLURM_CONF=<the printed path>. Debian's slurm-wlm and munge packages
# (installed here when missing, as root); munged, slurmctld and slurmd run with their state, sockets and logs
# under TUNELAB_SLURM_DIR (default /tmp/tunelab-slurm), slurmctld on TUNELAB_SLURM_PORT (default 6817) and
# slurmd on the port after it. The node declares more CPUs than the machine has (config_overrides), so that a
# few one-CPU worker jobs run side by side on a small machine. For tests only: jobs run as whoever submits.
set -euo pipefail

SLURM_DIR="${TUNELAB_SLURM_DIR:-/tmp/tunelab-slurm}"
CTLD_PORT="${TUNELAB_SLURM_PORT:-6817}"
SLURMD_PORT=$((CTLD_PORT + 1))
NODE_CPUS="${TUNELAB_SLURM_CPUS:-16}"
CONF="$SLURM_DIR/slurm.conf"
MUNGE_DIR="$SLURM_DIR/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
MUNGE_KEY="/etc/munge/munge.key"

say() { echo "slurm.sh: $*" >&2; }
die() { say "$*"; exit 1; }

install_packages() {
    [[ "$(id -u)" == 0 ]] || die "Slurm is not installed; install Debian's 'slurm-wlm' and 'munge' packages (needs root)"
    say "installing Debian's slurm-wlm and munge packages"
    export DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold slurm-wlm munge >&2
}

# The daemons' pid files, so that stop ends these processes and no others.
pid_of() {
    local file="$SLURM_DIR/$1.pid"
    [[ "$1" == munged ]] && file="$MUNGE_DIR/munged.pid"
    [[ -s "$file" ]] && kill -0 "$(cat "$file")" 2>/dev/null && cat "$file"
}

write_config() {
    local node memory
    node="$(hostname -s)"
    memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
    mkdir -p "$SLURM_DIR/state" "$SLURM_DIR/spool" "$SLURM_DIR/jobs"
    cat > "$CONF" <<EOF
# A one-node test cluster written by tunelab's scripts/slurm.sh: not for real work.
ClusterName=tunelab-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/slurmctld.log
SlurmdLogFile=$SLURM_DIR/slurmd.log
# No cgroups: processes are tracked by their parentage, which works in a container too.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
# Seconds between a job's SIGTERM (scancel, time limit) and its SIGKILL.
KillWait=30
# Finished jobs stay visible to scontrol for this long.
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=$NODE_CPUS RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if [[ -S "$MUNGE_SOCKET" ]] && pid_of munged >/dev/null; then
        return
    fi
    mkdir -p "$MUNGE_DIR"
    [[ -f "$MUNGE_KEY" ]] || mungekey --create --keyfile="$MUNGE_KEY"
    local owner
    owner="$(stat -c %U "$MUNGE_KEY")"
    chown "$owner" "$MUNGE_DIR"
    chmod 0755 "$MUNGE_DIR"
    local args=(--socket="$MUNGE_SOCKET" --key-file="$MUNGE_KEY" --pid-file="$MUNGE_DIR/munged.pid"
                --log-file="$MUNGE_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed")
    if [[ "$owner" == root ]]; then
        munged --force "${args[@]}"
    else
        runuser -u "$owner" -- munged "${args[@]}"
    fi
}

wait_for_node() {
    local state=""
    for _ in $(seq 1 60); do
        state="$(SLURM_CONF="$CONF" sinfo --noheader --format=%t 2>/dev/null | head -n 1 || true)"
        case "$state" in
            idle | mix | alloc) return ;;
        esac
        sleep 0.5
    done
    die "the node did not come up (state '${state:-none}'); see $SLURM_DIR/slurmctld.log and slurmd.log"
}

start() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null || install_packages
    [[ -f "$CONF" ]] || write_config
    start_munge
    if ! pid_of slurmctld >/dev/null; then
        say "starting slurmctld on 127.0.0.1:$CTLD_PORT (logs in $SLURM_DIR)"
        # -i: ignore state a previous cluster of this directory left that no longer matches
        slurmctld -f "$CONF" -i
    fi
    if ! pid_of slurmd >/dev/null; then
        slurmd -f "$CONF"
    fi
    wait_for_node
    echo "$CONF"
}

stop() {
    local daemon pid
    for daemon in slurmd slurmctld munged; do
        if pid="$(pid_of "$daemon")"; then
            kill "$pid"
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            say "stopped $daemon"
        fi
    done
}

case "${1:-}" in
    start | stop) "$1" ;;
    *) die "usage: $0 start|stop" ;;
esac
