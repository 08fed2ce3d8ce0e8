#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1 for the registry tests and CI.
#
#   scripts/postgres.sh start   # init (first time) and start; prints the registry URL on stdout
#   scripts/postgres.sh stop    # stop it; remove $TUNELAB_PG_DIR to throw the data away
#   scripts/postgres.sh status  # exit 0 if it is running
#
# Environment: TUNELAB_PG_DIR (default /tmp/tunelab-pg), TUNELAB_PG_PORT (default 55432; the
# next free port is taken when that one is busy). Trust auth: for tests only, never for real data.
set -euo pipefail

PG_DIR="${TUNELAB_PG_DIR:-/tmp/tunelab-pg}"
PG_PORT="${TUNELAB_PG_PORT:-55432}"
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"
DB_NAME="tunelab_test"
DB_USER="postgres"

say() { echo "postgres.sh: $*" >&2; }
die() { say "$*"; exit 1; }

find_bindir() {
    local initdb
    if initdb="$(command -v initdb)" && command -v pg_ctl >/dev/null; then
        dirname "$(readlink -f "$initdb")"
        return
    fi
    # Debian keeps the server binaries off PATH, one directory per major version.
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
        echo "$dir"
    fi
}

install_server() {
    [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed; install Debian's 'postgresql' package (needs root)"
    say "PostgreSQL is not installed: installing Debian's postgresql package and its dependencies system-wide" \
        "with apt-get, as root (for the registry tests)"
    # Only the binaries are wanted: no default cluster on port 5432 besides ours.
    if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
        mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
    fi
    export DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold postgresql >&2
}

# Postgres refuses to run as root: as root, run the server tools as the package's system user.
as_owner() {
    if [[ "$(id -u)" != 0 ]]; then
        "$@"
    elif command -v runuser >/dev/null; then
        runuser -u "$DB_USER" -- "$@"
    else
        su -s /bin/sh "$DB_USER" -c "$(printf '%q ' "$@")"
    fi
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

running_port() {
    # Line 4 of postmaster.pid is the port of the running server.
    sed -n 4p "$PG_DATA/postmaster.pid"
}

is_running() {
    [[ -f "$PG_DATA/postmaster.pid" ]] && as_owner "$BINDIR/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

init_cluster() {
    mkdir -p "$PG_DIR"
    if [[ "$(id -u)" == 0 ]]; then
        id "$DB_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/sh "$DB_USER"
        chown "$DB_USER" "$PG_DIR"
    fi
    say "initialising a cluster in $PG_DATA"
    as_owner "$BINDIR/initdb" -D "$PG_DATA" -U "$DB_USER" --auth=trust --encoding=UTF8 --locale=C >/dev/null
    # A throwaway cluster: durability is not wanted, speed is (tests create a database each).
    cat >> "$PG_DATA/postgresql.conf" <<EOF

# tunelab test cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
timezone = 'UTC'
EOF
}

start() {
    if ! is_running; then
        [[ -f "$PG_DATA/PG_VERSION" ]] || init_cluster
        local port="$PG_PORT"
        while port_in_use "$port"; do
            port=$((port + 1))
            (( port < PG_PORT + 50 )) || die "no free port in $PG_PORT..$port on 127.0.0.1"
        done
        say "starting on 127.0.0.1:$port (log: $PG_LOG)"
        as_owner "$BINDIR/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -o "-p $port" -w -t 60 start >/dev/null \
            || die "the server did not start; see $PG_LOG"
    fi
    local port
    port="$(running_port)"
    local psql=("$BINDIR/psql" -h 127.0.0.1 -p "$port" -U "$DB_USER" -d postgres -X -q -t -A)
    if [[ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]]; then
        "${psql[@]}" -c "CREATE DATABASE $DB_NAME" >/dev/null
    fi
    echo "postgresql+psycopg://$DB_USER@127.0.0.1:$port/$DB_NAME"
}

stop() {
    if is_running; then
        as_owner "$BINDIR/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
        say "stopped"
    else
        say "not running"
    fi
}

status() {
    if is_running; then
        say "running on 127.0.0.1:$(running_port)"
    else
        say "not running"
        return 1
    fi
}

case "${1:-}" in
    start | stop | status) ;;
    *) die "usage: $0 start|stop|status" ;;
esac

BINDIR="$(find_bindir)"
if [[ -z "$BINDIR" ]]; then
    [[ "$1" != start ]] && { say "not running"; [[ "$1" == stop ]]; exit; }
    install_server
    BINDIR="$(find_bindir)"
    [[ -n "$BINDIR" ]] || die "initdb/pg_ctl still not found after installing postgresql"
fi
"$1"
