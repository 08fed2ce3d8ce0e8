#!/usr/bin/env bash
# Run a command (the test suite) with TUNELAB_TEST_PG_URL naming a throwaway PostgreSQL server, and stop the
# server afterwards if this script started it: after success, failure, Ctrl-C or SIGTERM alike. A server that
# was already running (someone else's) is left running.
#
#   scripts/with_test_postgres.sh .venv/bin/python -m pytest     # what `make test` runs
#
# With TUNELAB_TEST_PG_URL already set, or TUNELAB_TEST_SQLITE_ONLY=1, the command runs as it is.
# TUNELAB_PG_SCRIPT names the server script (default: scripts/postgres.sh beside this one).
set -uo pipefail

if [[ -n "${TUNELAB_TEST_PG_URL:-}" || "${TUNELAB_TEST_SQLITE_ONLY:-}" == 1 ]]; then
    exec "$@"
fi
pg_script="${TUNELAB_PG_SCRIPT:-$(dirname "$0")/postgres.sh}"

started=0
if ! bash "$pg_script" status >/dev/null 2>&1; then
    started=1
fi
url="$(bash "$pg_script" start)" || exit 1
if [[ "$started" == 1 ]]; then
    trap 'bash "$pg_script" stop' EXIT
    # A trap on the signals makes the shell exit (running the EXIT trap) once the command has stopped.
    trap 'exit 130' INT
    trap 'exit 143' TERM
fi
export TUNELAB_TEST_PG_URL="$url"
"$@"
