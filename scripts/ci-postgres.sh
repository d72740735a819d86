#!/usr/bin/env bash
# Make sure a PostgreSQL server answers for the serve tests, then print the URL to use (last line of stdout).
#
#   export VMETA_TEST_DATABASE_URL="$(bash scripts/ci-postgres.sh | tail -n1)"
#
# 1. 127.0.0.1:5432 already answers (this machine kind runs PostgreSQL 15 with trust auth and a database
#    `test`): nothing to start.
# 2. Otherwise install Debian's `postgresql` package (apt-get, needs root) and start a throw-away cluster in
#    a temp folder on 127.0.0.1:5432 with trust auth for local connections, and create the database `test`.
# The tests create (and drop) their own random database inside it, so `test` itself stays untouched.
set -euo pipefail

HOST=127.0.0.1
PORT="${PGPORT:-5432}"
URL="postgresql+psycopg://postgres@${HOST}:${PORT}/test"

answers() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -h "$HOST" -p "$PORT" -q
  else
    (exec 3<>"/dev/tcp/${HOST}/${PORT}") 2>/dev/null
  fi
}

if answers; then
  echo "PostgreSQL already answers on ${HOST}:${PORT}" >&2
  echo "$URL"
  exit 0
fi

echo "PostgreSQL does not answer on ${HOST}:${PORT}; installing and starting a local cluster" >&2
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
fi
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
DATA="$(mktemp -d /tmp/vmeta-pg.XXXXXX)"
RUN_AS=()
if [ "$(id -u)" -eq 0 ]; then  # initdb refuses to run as root: use the postgres system user
  id postgres >/dev/null 2>&1 || useradd --system --home "$DATA" postgres
  chown -R postgres "$DATA"
  RUN_AS=(runuser -u postgres --)
fi
"${RUN_AS[@]}" "$BIN/initdb" -D "$DATA/db" -U postgres --auth=trust -E UTF8 >&2
"${RUN_AS[@]}" "$BIN/pg_ctl" -D "$DATA/db" -l "$DATA/log" -w \
  -o "-h ${HOST} -p ${PORT} -k ${DATA}" start >&2
"$BIN/psql" -h "$HOST" -p "$PORT" -U postgres -qc "CREATE DATABASE test" >&2 || true
for _ in $(seq 1 30); do answers && break; sleep 1; done
answers || { echo "PostgreSQL did not start; see $DATA/log" >&2; exit 1; }
echo "started PostgreSQL (${DATA}); stop it with: ${RUN_AS[*]} $BIN/pg_ctl -D $DATA/db stop" >&2
echo "$URL"
