#!/usr/bin/env bash
# The real PostgreSQL and Redis servers the tests run against, on 127.0.0.1 only.
#
#   infrastructure/ci/services.sh [up]      install if missing, start both, print the env lines
#   infrastructure/ci/services.sh pg-stop | pg-start | redis-stop | redis-start | down | env
#
# Servers run from $SERVICES_DIR (default /tmp/mlops-test-services) on non-default ports, so they
# never meet a developer's own Postgres or Redis, and without a service manager (CI machines and
# containers have no systemd). The stop/start subcommands let tests simulate an outage. Every
# subcommand is idempotent: starting a running server or stopping a stopped one does nothing.
# `up` also writes the export lines to $SERVICES_DIR/env for `source`.
set -euo pipefail

SERVICES_DIR=${SERVICES_DIR:-/tmp/mlops-test-services}
PG_PORT=${MLOPS_TEST_PG_PORT:-55432}
REDIS_PORT=${MLOPS_TEST_REDIS_PORT:-56379}
PG_DATA="$SERVICES_DIR/postgres/data"
PG_LOG="$SERVICES_DIR/postgres/postgres.log"
REDIS_DIR="$SERVICES_DIR/redis"
WAIT_TRIES=60 # x 0.5 s

log() { printf 'services: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

pg_bin() {
    # The newest installed major version; Debian keeps binaries off PATH under this directory.
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
        sort -V | tail -n 1)
    [[ -n "$dir" && -x "$dir/pg_ctl" ]] || return 1
    printf '%s\n' "$dir"
}

as_postgres() {
    # Postgres refuses to run as root; a non-root developer runs it as themself.
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

install_packages() {
    local missing=()
    pg_bin >/dev/null || missing+=(postgresql)
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing ${missing[*]}"
    local sudo=()
    [[ $EUID -eq 0 ]] || sudo=(sudo)
    # The packages' own services would start on the default ports; ours are all the tests need.
    local policy=/usr/sbin/policy-rc.d
    if [[ $EUID -eq 0 && ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    # apt's chatter goes to stderr: stdout carries only the export lines, for eval.
    "${sudo[@]}" apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >&2
    pg_bin >/dev/null || die "PostgreSQL binaries not found under /usr/lib/postgresql after install"
}

pg_ctl_cmd() {
    local runner=""
    if [[ $EUID -eq 0 ]]; then runner="runuser -u postgres -- "; fi
    printf '%s%s/pg_ctl -D %s -l %s' "$runner" "$(pg_bin)" "$PG_DATA" "$PG_LOG"
}

pg_running() {
    [[ -f "$PG_DATA/PG_VERSION" ]] && as_postgres "$(pg_bin)/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_wait() {
    local bin i
    bin=$(pg_bin)
    for ((i = 0; i < WAIT_TRIES; i++)); do
        "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres && return 0
        sleep 0.5
    done
    tail -n 20 "$PG_LOG" >&2 || true
    die "PostgreSQL did not accept connections on 127.0.0.1:$PG_PORT"
}

pg_init() {
    [[ -f "$PG_DATA/PG_VERSION" ]] && return 0
    log "creating the PostgreSQL cluster in $PG_DATA"
    mkdir -p "$PG_DATA"
    if [[ $EUID -eq 0 ]]; then chown -R postgres:postgres "$SERVICES_DIR/postgres"; fi
    chmod 700 "$PG_DATA"
    # Trust is safe here: the server listens on 127.0.0.1 only and holds throwaway test data.
    as_postgres "$(pg_bin)/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 >/dev/null
    cat >>"$PG_DATA/postgresql.conf" <<CONF

# mlops-stack test services (infrastructure/ci/services.sh)
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
max_connections = 200
# Throwaway data: durability costs time and buys nothing in tests.
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
}

pg_start() {
    pg_init
    # A directory left by an earlier machine may belong to another uid.
    if [[ $EUID -eq 0 ]]; then chown -R postgres:postgres "$SERVICES_DIR/postgres"; fi
    if ! pg_running; then
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        as_postgres "$(pg_bin)/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null
    fi
    pg_wait
}

pg_stop() {
    if pg_running; then
        log "stopping PostgreSQL"
        # fast: disconnect clients now, as a crash or a restart of the database would.
        as_postgres "$(pg_bin)/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
    fi
}

pg_sql() {
    "$(pg_bin)/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtAc "$1"
}

pg_provision() {
    # CREATEDB: the tests give each test its own database.
    if [[ -z $(pg_sql "SELECT 1 FROM pg_roles WHERE rolname = 'mlops'") ]]; then
        pg_sql "CREATE ROLE mlops LOGIN CREATEDB"
    fi
    if [[ -z $(pg_sql "SELECT 1 FROM pg_database WHERE datname = 'monitoring'") ]]; then
        pg_sql "CREATE DATABASE monitoring OWNER mlops"
    fi
}

redis_ping() {
    [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

redis_start() {
    mkdir -p "$REDIS_DIR"
    if ! redis_ping; then
        log "starting Redis on 127.0.0.1:$REDIS_PORT"
        # appendonly: a stopped and restarted server keeps its streams, as a real one would.
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --dir "$REDIS_DIR" \
            --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" \
            --appendonly yes --appendfsync everysec --save "" >/dev/null
    fi
    local i
    for ((i = 0; i < WAIT_TRIES; i++)); do
        redis_ping && return 0
        sleep 0.5
    done
    tail -n 20 "$REDIS_DIR/redis.log" >&2 || true
    die "Redis did not answer PING on 127.0.0.1:$REDIS_PORT"
}

redis_stop() {
    if redis_ping; then
        log "stopping Redis"
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
        local i
        for ((i = 0; i < WAIT_TRIES; i++)); do
            redis_ping || return 0
            sleep 0.5
        done
        die "Redis on 127.0.0.1:$REDIS_PORT did not stop"
    fi
}

env_lines() {
    local script
    script=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
    cat <<ENV
export MLOPS_TEST_POSTGRES_URL=postgresql+psycopg2://mlops@127.0.0.1:$PG_PORT/monitoring
export MLOPS_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export MLOPS_TEST_PG_CTL="$(pg_ctl_cmd)"
export MLOPS_TEST_SERVICES="$script"
export MLOPS_TEST_SERVICES_DIR="$SERVICES_DIR"
ENV
}

up() {
    install_packages
    mkdir -p "$SERVICES_DIR"
    chmod 755 "$SERVICES_DIR"
    pg_start
    pg_provision
    redis_start
    env_lines | tee "$SERVICES_DIR/env"
}

case "${1:-up}" in
up) up ;;
pg-start) pg_start ;;
pg-stop) pg_stop ;;
redis-start) redis_start ;;
redis-stop) redis_stop ;;
down)
    redis_stop
    pg_stop
    ;;
env) env_lines ;;
*) die "unknown subcommand '$1' (up, pg-start, pg-stop, redis-start, redis-stop, down, env)" ;;
esac
