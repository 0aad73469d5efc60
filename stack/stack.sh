#!/usr/bin/env bash
# The local stack: PostgreSQL 15 (own data dir) and single-node Apache Kafka (KRaft), on loopback.
#   stack/stack.sh start | stop [postgres|kafka] | status | env | fetch   (start starts whatever is stopped;
#   fetch only fetches the Kafka jars and prints their folder)
# Settings (environment): STACK_DIR (default <repo>/.stack), PGPORT (5432), KAFKA_PORT (9092),
# KAFKA_CONTROLLER_PORT (9093), KAFKA_CACHE_DIR (<repo>/.cache), PG_BINDIR (detected), PG_WAL_LEVEL (replica; logical
# for a stack that logical decoding reads, as Debezium in `make bench-debezium`: read when the data dir is made).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=versions.env
source "$here/versions.env"

STACK_DIR=${STACK_DIR:-$repo/.stack}
PGPORT=${PGPORT:-5432}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
KAFKA_CACHE_DIR=${KAFKA_CACHE_DIR:-$repo/.cache}
KAFKA_HEAP=${KAFKA_HEAP:-768m}
PG_WAL_LEVEL=${PG_WAL_LEVEL:-replica}
PG_USER=warehouse
PG_PASSWORD=warehouse   # local development only: the stack listens on 127.0.0.1 alone
PG_DB=warehouse

mkdir -p "$STACK_DIR/logs"
# As root, PostgreSQL runs as the 'postgres' OS user, which must be able to reach its data directory; when the
# checkout sits in a folder it cannot enter (a private temp dir, say), the data goes to /var/tmp instead.
pg_root=$STACK_DIR/postgres
if [[ $(id -u) -eq 0 ]] && ! (cd / && runuser -u postgres -- "$BASH" -c '[[ -x $1 ]]' _ "$STACK_DIR"); then
  digest=$(printf %s "$STACK_DIR" | md5sum)
  pg_root=/var/tmp/warehouse-tracker-postgres-${digest:0:12}
fi
pg_data=$pg_root/data
pg_run=$pg_root/run
pg_log=$pg_root/postgres.log
[[ $pg_root == "$STACK_DIR/postgres" ]] && pg_log=$STACK_DIR/logs/postgres.log
kafka_data=$STACK_DIR/kafka/data
kafka_conf=$STACK_DIR/kafka/server.properties
kafka_pid=$STACK_DIR/kafka/kafka.pid
kafka_log=$STACK_DIR/logs/kafka.log
kafka_libs=$KAFKA_CACHE_DIR/kafka-$KAFKA_VERSION/libs
alternative="or run everything in containers instead: docker compose up --build"

say() { printf 'stack: %s\n' "$*"; }
die() { printf 'stack: %s\n' "$*" >&2; exit 1; }

find_pg_bindir() {
  if [[ -n ${PG_BINDIR:-} ]]; then echo "$PG_BINDIR"; return; fi
  local d=/usr/lib/postgresql/$POSTGRES_MAJOR/bin
  if [[ -x $d/postgres ]]; then echo "$d"; return; fi
  if command -v pg_config >/dev/null && [[ -x $(pg_config --bindir)/postgres ]]; then pg_config --bindir; return; fi
  echo ""
}

check_prerequisites() {
  PG_BINDIR=$(find_pg_bindir)
  [[ -n $PG_BINDIR ]] || die "missing PostgreSQL $POSTGRES_MAJOR server binaries: install them (apt-get install postgresql-$POSTGRES_MAJOR) — $alternative"
  command -v java >/dev/null || die "missing java: install a JDK 17+ (apt-get install openjdk-17-jdk-headless) — $alternative"
  if [[ ! -f $kafka_libs/.complete ]]; then
    command -v mvn >/dev/null || die "missing mvn (needed once to fetch the Kafka jars): install Maven (apt-get install maven) — $alternative"
  fi
}

# PostgreSQL refuses to run as root: as root, its commands run as the 'postgres' OS user.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pg_running() { [[ -f $pg_data/PG_VERSION ]] && as_pg "$PG_BINDIR/pg_ctl" status -D "$pg_data" >/dev/null 2>&1; }

kafka_running() {
  [[ -f $kafka_pid ]] && kill -0 "$(cat "$kafka_pid")" 2>/dev/null \
    && grep -q kafka.Kafka "/proc/$(cat "$kafka_pid")/cmdline" 2>/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
  say "$what answers"
}

pg_init() {
  say "initialising PostgreSQL data directory $pg_data"
  mkdir -p "$pg_data" "$pg_run"
  if [[ $(id -u) -eq 0 ]]; then
    chmod 755 "$pg_root"
    chown -R postgres: "$pg_root"
  fi
  chmod 700 "$pg_data" "$pg_run"
  # The superuser is reachable only through the socket in the stack's own 0700 folder; TCP needs a password.
  as_pg "$PG_BINDIR/initdb" -D "$pg_data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$STACK_DIR/logs/initdb.log" 2>&1 \
    || die "initdb failed, see $STACK_DIR/logs/initdb.log"
  cat >>"$pg_data/postgresql.conf" <<EOF
# warehouse-tracker local stack
listen_addresses = '127.0.0.1'
unix_socket_directories = '$pg_run'
max_connections = 300
shared_buffers = 512MB
max_wal_size = 4GB
wal_level = $PG_WAL_LEVEL
EOF
}

pg_bootstrap() {  # role and database; safe to repeat
  local psql=("$PG_BINDIR/psql" -h "$pg_run" -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt)
  if [[ -z $(as_pg "${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'") ]]; then
    as_pg "${psql[@]}" -c "CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'" -c "GRANT pg_checkpoint, pg_signal_backend TO $PG_USER"
  fi
  if [[ $PG_WAL_LEVEL == logical ]]; then  # logical decoding connects with the replication protocol
    as_pg "${psql[@]}" -c "ALTER ROLE $PG_USER REPLICATION"
  fi
  if [[ -z $(as_pg "${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ]]; then
    as_pg "${psql[@]}" -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
  fi
}

pg_start() {
  if pg_running; then say "PostgreSQL already running on 127.0.0.1:$PGPORT"; return; fi
  [[ -f $pg_data/PG_VERSION ]] || pg_init
  say "starting PostgreSQL on 127.0.0.1:$PGPORT (log: $pg_log)"
  touch "$pg_log"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: "$pg_log"; fi
  [[ $pg_log == "$STACK_DIR/logs/postgres.log" ]] || ln -sfn "$pg_log" "$STACK_DIR/logs/postgres.log"
  as_pg "$PG_BINDIR/pg_ctl" start -D "$pg_data" -l "$pg_log" -w -t 60 -o "-p $PGPORT" >/dev/null \
    || die "PostgreSQL did not start; last log lines:$(printf '\n'; tail -n 5 "$pg_log")"
  wait_for 30 "PostgreSQL" as_pg "$PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" \
    || die "PostgreSQL does not answer on 127.0.0.1:$PGPORT; see $pg_log"
  pg_bootstrap
}

kafka_fetch() {
  [[ -f $kafka_libs/.complete ]] && return
  say "fetching Apache Kafka $KAFKA_VERSION broker jars from Maven Central (once) into $kafka_libs"
  mkdir -p "$kafka_libs" "$STACK_DIR/logs"
  if ! mvn -B -q -f "$here/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$kafka_libs" \
      >"$STACK_DIR/logs/kafka-fetch.log" 2>&1; then
    die "could not fetch the Kafka jars with Maven; see $STACK_DIR/logs/kafka-fetch.log"
  fi
  touch "$kafka_libs/.complete"
}

kafka_java() { java -cp "$kafka_libs/*" "$@"; }

kafka_start() {
  if kafka_running; then say "Kafka already running on 127.0.0.1:$KAFKA_PORT"; return; fi
  if port_open "$KAFKA_PORT"; then die "port $KAFKA_PORT is taken by another process; set KAFKA_PORT"; fi
  kafka_fetch
  mkdir -p "$kafka_data" "$STACK_DIR/logs"
  sed -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" -e "s#@KAFKA_CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
    -e "s#@KAFKA_DATA_DIR@#$kafka_data#g" "$here/kafka/server.properties.in" >"$kafka_conf"
  if [[ ! -f $kafka_data/meta.properties ]]; then
    say "formatting Kafka storage (KRaft) in $kafka_data"
    kafka_java kafka.tools.StorageTool format --standalone -c "$kafka_conf" \
      -t "$(kafka_java kafka.tools.StorageTool random-uuid)" >"$STACK_DIR/logs/kafka-format.log" 2>&1 \
      || die "formatting Kafka storage failed; see $STACK_DIR/logs/kafka-format.log"
  fi
  [[ -f $kafka_log ]] && mv "$kafka_log" "$kafka_log.1"
  say "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (log: $kafka_log)"
  nohup java "-Xmx$KAFKA_HEAP" "-Xms$KAFKA_HEAP" -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$here/kafka/log4j2.yaml" \
    -cp "$kafka_libs/*" kafka.Kafka "$kafka_conf" >"$kafka_log" 2>&1 </dev/null &
  echo $! >"$kafka_pid"
  kafka_started() {
    # kill -0, not kafka_running: right after the fork the pid may not have exec'd java yet.
    kill -0 "$(cat "$kafka_pid")" 2>/dev/null \
      || die "Kafka exited during start; last log lines:$(printf '\n'; tail -n 15 "$kafka_log")"
    grep -q 'Kafka Server started' "$kafka_log" && port_open "$KAFKA_PORT"
  }
  wait_for 90 "Kafka" kafka_started || die "Kafka did not answer within 90 s; see $kafka_log"
}

pg_stop() {
  if pg_running; then
    say "stopping PostgreSQL"
    as_pg "$PG_BINDIR/pg_ctl" stop -D "$pg_data" -m fast -w -t 60 >/dev/null
  else
    say "PostgreSQL is not running"
  fi
}

kafka_stop() {
  if ! kafka_running; then say "Kafka is not running"; rm -f "$kafka_pid"; return; fi
  local pid; pid=$(cat "$kafka_pid")
  say "stopping Kafka (pid $pid)"
  kill -TERM "$pid"
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then say "Kafka did not stop within 60 s; killing it"; kill -KILL "$pid"; fi
    sleep 0.5
  done
  rm -f "$kafka_pid"
}

print_env() {
  echo "DATABASE_URL=postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PGPORT/$PG_DB"
  echo "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT"
}

status() {
  local rc=0
  if pg_running; then say "PostgreSQL: running on 127.0.0.1:$PGPORT (data: $pg_data)"
  else say "PostgreSQL: stopped"; rc=3; fi
  if kafka_running; then say "Kafka $KAFKA_VERSION: running on 127.0.0.1:$KAFKA_PORT, pid $(cat "$kafka_pid") (data: $kafka_data)"
  else say "Kafka: stopped"; rc=3; fi
  return $rc
}

cmd=${1:-}
case $cmd in
  start)
    check_prerequisites
    if pg_running && kafka_running; then
      say "already running; nothing to do"
    else
      pg_start
      kafka_start
      say "ready; logs in $STACK_DIR/logs"
    fi
    print_env
    ;;
  stop)
    PG_BINDIR=$(find_pg_bindir)
    case ${2:-both} in
      kafka) kafka_stop ;;
      postgres) if [[ -n $PG_BINDIR ]]; then pg_stop; fi ;;
      both) kafka_stop; if [[ -n $PG_BINDIR ]]; then pg_stop; fi ;;
      *) die "usage: stack/stack.sh stop [postgres|kafka]" ;;
    esac
    ;;
  status)
    PG_BINDIR=$(find_pg_bindir)
    status
    ;;
  env) print_env ;;
  fetch) kafka_fetch; echo "$kafka_libs" ;;  # the broker jars only, for the containers' Kafka stand-in
  *) die "usage: stack/stack.sh start|stop [postgres|kafka]|status|env|fetch" ;;
esac
