#!/usr/bin/env bash
# Start the real services the test suite uses and print their settings as
# VAR=value lines (the Makefile exports them to pytest).
#   PILOTWMS_TEST_POSTGRES_URL  a throw-away PostgreSQL cluster on 127.0.0.1
#   PILOTWMS_TEST_SLURM         1 when a real single-node Slurm answers (informative: the
#                               slurm tests check sbatch and scontrol themselves)
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

# A real single-node Slurm for the factory's batch tests, oversubscribed so that many small
# test pilots share the 2 CPUs of a CI machine.
if SLURM_OVERSUBSCRIBE=${SLURM_OVERSUBSCRIBE:-FORCE:8} bash "$HERE/start-slurm.sh" start >&2; then
    echo "PILOTWMS_TEST_SLURM=1"
else
    echo "[services] Slurm did not start (see above): the slurm tests will be skipped" >&2
fi
