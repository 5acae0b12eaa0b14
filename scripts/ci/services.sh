#!/usr/bin/env bash
# Start the real services the test suite uses and print their settings as
# VAR=value lines (the Makefile exports them to pytest).
#   PILOTWMS_TEST_POSTGRES_URL  a throw-away PostgreSQL cluster on 127.0.0.1
# Without root the services cannot be started; the tests that need them are
# then skipped with a reason, and this script says so on stderr.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ "$(id -u)" != 0 ]; then
    echo "[services] not root: PostgreSQL and Slurm tests will be skipped" >&2
    exit 0
fi

if [ -n "${PILOTWMS_TEST_POSTGRES_URL:-}" ]; then
    echo "PILOTWMS_TEST_POSTGRES_URL=$PILOTWMS_TEST_POSTGRES_URL"
else
    url=$(PG_MODE=tmp PG_PORT=${PILOTWMS_TEST_PG_PORT:-55432} PG_USER=pilotwms PG_PASSWORD=pilotwms \
          PG_DB=pilotwms_test bash "$HERE/start-postgres.sh" start)
    echo "PILOTWMS_TEST_POSTGRES_URL=${url/postgresql:/postgresql+psycopg:}"
fi
