#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the store's tests and benchmarks (never for real runs' data).
#
#   bash scripts/postgres.sh start   # installs Debian's postgresql if missing, starts a cluster, prints its URL
#   bash scripts/postgres.sh env     # prints `export PREFWRAP_TEST_POSTGRES_URL=...` (eval it)
#   bash scripts/postgres.sh stop    # stops the cluster and deletes its directory
#
# The cluster runs as an unprivileged user (`nobody` when started by root: PostgreSQL refuses root) in
# $PREFWRAP_PG_DIR (default /tmp/prefwrap-postgres-$PORT), listens on 127.0.0.1:$PREFWRAP_PG_PORT
# (default 55432) and on a unix socket in that directory, and trusts local connections: throw-away only.
# `start` is idempotent: a cluster already running there is reused. Exit status 1 when PostgreSQL can
# neither be found nor installed (callers skip the PostgreSQL tests then).
set -euo pipefail

PORT="${PREFWRAP_PG_PORT:-55432}"
DIR="${PREFWRAP_PG_DIR:-/tmp/prefwrap-postgres-$PORT}"
URL="postgresql://prefwrap@127.0.0.1:$PORT/prefwrap"

find_bin() {
  local found
  found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -z "$found" && -x "$(command -v pg_ctl || true)" ]]; then
    found="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
  fi
  echo "$found"
}

install_postgres() {
  [[ "$(id -u)" == 0 ]] || return 1
  command -v apt-get >/dev/null || return 1
  { apt-get install -y -qq postgresql || { apt-get update -qq && apt-get install -y -qq postgresql; }; } >/dev/null 2>&1
}

as_owner() {  # run a command as the cluster's unprivileged owner
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u nobody -- "$@"
  else
    "$@"
  fi
}

start() {
  local bin
  bin="$(find_bin)"
  if [[ -z "$bin" ]]; then
    install_postgres || { echo "postgres.sh: PostgreSQL is not installed and could not be installed" >&2; exit 1; }
    bin="$(find_bin)"
  fi
  [[ -n "$bin" && -x "$bin/pg_ctl" ]] || { echo "postgres.sh: no pg_ctl found" >&2; exit 1; }
  if [[ -f "$DIR/data/postmaster.pid" ]] && as_owner "$bin/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
    echo "$URL"
    return
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"
  [[ "$(id -u)" == 0 ]] && chown nobody "$DIR" && chmod 700 "$DIR"
  as_owner "$bin/initdb" -D "$DIR/data" -U prefwrap --auth=trust --encoding=UTF8 --no-locale >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; exit 1; }
  as_owner "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DIR -c max_connections=100" \
    >/dev/null || { cat "$DIR/server.log" >&2; exit 1; }
  as_owner "$bin/createdb" -h "$DIR" -p "$PORT" -U prefwrap prefwrap
  echo "$URL"
}

stop() {
  local bin
  bin="$(find_bin)"
  if [[ -n "$bin" && -f "$DIR/data/postmaster.pid" ]]; then
    as_owner "$bin/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$DIR"
}

case "${1:-}" in
  start) start ;;
  env) echo "export PREFWRAP_TEST_POSTGRES_URL=$(start)" ;;
  stop) stop ;;
  *) echo "usage: $0 start|env|stop" >&2; exit 2 ;;
esac
