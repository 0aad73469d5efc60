#!/bin/bash
# As the official image's entrypoint does, for what docker-compose.yml uses: a first start makes the cluster in
# $PGDATA with POSTGRES_USER (a superuser) and POSTGRES_PASSWORD (scram for every network connection), and
# POSTGRES_DB; later starts use what is there. The server runs as the postgres user and listens on every address.
set -euo pipefail
: "${POSTGRES_PASSWORD:?the postgres stand-in needs POSTGRES_PASSWORD, as the official image does}"
user=${POSTGRES_USER:-postgres} db=${POSTGRES_DB:-${POSTGRES_USER:-postgres}}
mkdir -p "$PGDATA" /run/postgresql
chown postgres: "$PGDATA" /run/postgresql
chmod 0700 "$PGDATA"
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [[ ! -s $PGDATA/PG_VERSION ]]; then
  pwfile=$(mktemp)
  chown postgres: "$pwfile"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  as_pg initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  if [[ $db != postgres ]]; then
    as_pg postgres --single -D "$PGDATA" -j postgres <<<"CREATE DATABASE \"$db\" OWNER \"$user\";" >/dev/null
  fi
  echo "postgres stand-in: made the cluster, role $user, database $db"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$@" -D "$PGDATA" -c listen_addresses='*'
