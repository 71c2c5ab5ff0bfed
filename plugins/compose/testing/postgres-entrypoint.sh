#!/bin/sh
# The offline PostgreSQL test image's entrypoint, with the official image's interface:
# POSTGRES_USER, POSTGRES_DB, POSTGRES_PASSWORD_FILE, PGDATA, PGPORT; `postgres ARGS` runs the
# server. Starts as root to read the 0600 secret file and own PGDATA, then drops to postgres.
set -eu
BIN=/usr/lib/postgresql/15/bin
: "${PGDATA:=/var/lib/postgresql/data}" "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
[ "${1:-postgres}" = postgres ] && [ $# -gt 0 ] && shift
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pw=$(mktemp); cat "${POSTGRES_PASSWORD_FILE:?}" > "$pw"; chown postgres "$pw"
    as_pg "$BIN/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pw" -A scram-sha-256 \
        --auth-local=trust >/dev/null
    rm -f "$pw"
    echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    as_pg "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start >/dev/null
    if [ "$POSTGRES_DB" != postgres ]; then
        as_pg "$BIN/psql" -h /run/postgresql -p "${PGPORT:-5432}" -U "$POSTGRES_USER" -d postgres \
            -q -c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
    fi
    as_pg "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/postgres" -D "$PGDATA" "$@"
