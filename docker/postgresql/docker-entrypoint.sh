#!/bin/bash
# Entrypoint of the local PostgreSQL image: the part of the official postgres image's
# contract that the chart relies on.
# - `postgres [args…]` (or args starting with "-"): on an empty $PGDATA, initdb with
#   POSTGRES_USER (default postgres) as superuser and POSTGRES_PASSWORD as its password,
#   every TCP connection with scram-sha-256, the database POSTGRES_DB (default: the user),
#   then every /docker-entrypoint-initdb.d/*.sh (run when executable, sourced otherwise)
#   and *.sql against a server listening on the Unix socket only; then exec postgres.
# - Anything else is exec'ed as is (e.g. bash /scripts/bootstrap-replica.sh).
# Runs as the image's non-root user and writes only to $PGDATA and /var/run/postgresql.
set -euo pipefail

log() { echo "docker-entrypoint: $*" >&2; }

initialised() { [ -s "$PGDATA/PG_VERSION" ]; }

prepare_directories() {
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA"
  mkdir -p /var/run/postgresql 2>/dev/null || true
}

init_database_directory() {
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    log "the database is not initialised and POSTGRES_PASSWORD is empty: set it to the superuser's password"
    exit 1
  fi
  log "initialising $PGDATA (superuser ${POSTGRES_USER})"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of options.
  # Unix-socket connections are trusted (the init scripts' psql); TCP ones, loopback
  # included, need a password (stricter than the official image, which trusts loopback).
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 ${POSTGRES_INITDB_ARGS:-}
  printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$PGDATA/pg_hba.conf"
}

sql() {
  psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc --username "$POSTGRES_USER" "$@"
}

create_database() {
  [ "$POSTGRES_DB" = postgres ] && return 0
  if [ -z "$(sql --dbname postgres --tuples-only --set db="$POSTGRES_DB" \
      <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")" ]; then
    sql --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
}

run_init_scripts() {
  local file
  for file in /docker-entrypoint-initdb.d/*; do
    [ -e "$file" ] || continue
    case "$file" in
      *.sh)
        if [ -x "$file" ]; then
          log "running $file"
          "$file"
        else
          log "sourcing $file"
          # shellcheck disable=SC1090
          . "$file"
        fi
        ;;
      *.sql) log "running $file"; sql --dbname "$POSTGRES_DB" -f "$file" ;;
      *) log "ignoring $file" ;;
    esac
  done
}

first_start() {
  init_database_directory
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
  create_database
  run_init_scripts
  pg_ctl -D "$PGDATA" -m fast -w stop
  log "initialisation complete"
}

main() {
  local first="${1:-postgres}"
  if [ "${first:0:1}" = - ]; then
    set -- postgres "$@"
  elif [ $# -eq 0 ]; then
    set -- postgres
  fi
  if [ "${1:-}" != postgres ]; then
    exec "$@"
  fi
  if [ "$(id -u)" = 0 ]; then
    log "PostgreSQL does not run as root: run the image as its user (uid 10001) or another non-root uid"
    exit 1
  fi
  export POSTGRES_USER="${POSTGRES_USER:-postgres}"
  export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
  export PGPORT="${PGPORT:-5432}"
  prepare_directories
  if ! initialised; then
    first_start
  fi
  unset POSTGRES_PASSWORD
  exec "$@"
}

main "$@"
