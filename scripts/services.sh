#!/usr/bin/env bash
# Make sure every backing service chargegrid needs is installed and running on this machine:
#   PostgreSQL 127.0.0.1:5432 (trust auth, role postgres, database chargegrid)
#   Redis      127.0.0.1:6379
#   RabbitMQ   127.0.0.1:5672 (guest/guest; management UI on 127.0.0.1:15672 unless CHARGEGRID_RABBIT_MGMT=0)
#   Mosquitto  127.0.0.1:1883
#   SecantusDB 127.0.0.1:27017 (MongoDB wire protocol, in-memory, from the venv in $CHARGEGRID_CACHE)
# Idempotent: installs (apt) only what is missing, starts only what is not listening, never
# restarts anything that is up. Needs root (or passwordless sudo) only when it has to install.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DB_NAME="${CHARGEGRID_DB_NAME:-chargegrid}"
SECANTUS_LOG="$CACHE/secantus.log"
SECANTUS_PID="$CACHE/secantus.pid"

mkdir -p "$CACHE"
# Serialise concurrent runs (dev.sh and test.sh at once) so nothing is started twice.
exec 9>"$CACHE/services.lock"
flock -w 600 9 || die "another scripts/services.sh has held $CACHE/services.lock for 10 minutes"

# as_root CMD...: run CMD as root (directly or via sudo -n).
# The lock fd (9) is closed for every command: a daemon started here must not inherit it.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@" 9>&-; else sudo -n "$@" 9>&-; fi
}

# ---------------------------------------------------------------- PostgreSQL
pg_sql() {
    PGCONNECT_TIMEOUT=5 psql -w -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d postgres -tAc "$1"
}

# Put loopback trust rules in front of the cluster's pg_hba.conf (first match wins), then reload.
pg_trust_loopback() {
    local ver="$1" hba="/etc/postgresql/$1/main/pg_hba.conf" tmp
    [ -f "$hba" ] || die "postgres: $hba not found"
    if ! grep -q '^# chargegrid: loopback trust' "$hba"; then
        log "postgres: adding loopback trust rules to $hba"
        tmp="$(mktemp)"
        {
            printf '# chargegrid: loopback trust for local development and CI (added by scripts/services.sh)\n'
            printf 'host    all    all    127.0.0.1/32    trust\n'
            printf 'host    all    all    ::1/128         trust\n'
            cat "$hba"
        } >"$tmp"
        # shellcheck disable=SC2016 # expands in the child sh
        as_root sh -c 'cat "$1" > "$2"' _ "$tmp" "$hba" # keeps the file's owner and mode
        rm -f "$tmp"
    fi
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >/dev/null
    sleep 1
}

ensure_postgres() {
    local ver i
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1 ||
        ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
        apt_install postgresql
    fi
    ver="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n1)"
    if [ -z "$ver" ]; then
        ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n1)"
        log "postgres: creating cluster $ver/main"
        as_root pg_createcluster "$ver" main >/dev/null
    fi
    if port_open 127.0.0.1 5432; then
        log "postgres: already running ($ver/main on 127.0.0.1:5432)"
    else
        log "postgres: starting cluster $ver/main"
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start >/dev/null ||
            {
                tail -n 20 "/var/log/postgresql/postgresql-$ver-main.log" >&2 || true
                die "postgres: pg_ctlcluster start failed"
            }
    fi
    wait_for_port 127.0.0.1 5432 60 || die "postgres: not listening on 127.0.0.1:5432"
    for ((i = 0; i < 60; i++)); do
        pg_isready -q -h 127.0.0.1 -p 5432 && break
        sleep 1
    done
    pg_isready -q -h 127.0.0.1 -p 5432 || die "postgres: not accepting connections"
    if ! pg_sql 'SELECT 1' >/dev/null 2>&1; then
        pg_trust_loopback "$ver"
        pg_sql 'SELECT 1' >/dev/null || die "postgres: cannot connect as postgres@127.0.0.1 without a password"
    fi
    if [ "$(pg_sql "SELECT 1 FROM pg_database WHERE datname='$DB_NAME'")" = "1" ]; then
        log "postgres: database $DB_NAME exists"
    else
        pg_sql "CREATE DATABASE \"$DB_NAME\"" >/dev/null
        log "postgres: created database $DB_NAME"
    fi
    PG_VER="$ver"
}

# ---------------------------------------------------------------- Redis
ensure_redis() {
    local i
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        apt_install redis-server redis-tools
    fi
    if port_open 127.0.0.1 6379; then
        log "redis: already running (127.0.0.1:6379)"
    else
        log "redis: starting"
        as_root mkdir -p /var/lib/redis /var/log/redis
        as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
            --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null ||
            die "redis: redis-server failed to start (see /var/log/redis/ci.log)"
    fi
    wait_for_port 127.0.0.1 6379 30 || die "redis: not listening on 127.0.0.1:6379"
    for ((i = 0; i < 30; i++)); do
        [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ] && return 0
        sleep 1
    done
    die "redis: does not answer PING"
}

# ---------------------------------------------------------------- RabbitMQ
# Management UI bound to loopback. advanced.config sets the app env without going through the
# conf schema, so it stays harmless if the plugin is disabled later. Never overwrites a file.
rabbit_mgmt_loopback_config() {
    local adv=/etc/rabbitmq/advanced.config
    [ -e "$adv" ] && return 0
    # shellcheck disable=SC2016 # expands in the child sh
    as_root sh -c 'cat > "$1"' _ "$adv" <<'EOF'
%% Added by chargegrid scripts/services.sh: management UI on loopback only.
[{rabbitmq_management, [{tcp_config, [{ip, "127.0.0.1"}, {port, 15672}]}]}].
EOF
}

ensure_rabbitmq() {
    if ! command -v rabbitmq-server >/dev/null 2>&1 || ! command -v rabbitmqctl >/dev/null 2>&1; then
        apt_install rabbitmq-server
    fi
    if port_open 127.0.0.1 5672; then
        log "rabbitmq: already running (127.0.0.1:5672)"
    elif timeout 30 rabbitmqctl -q ping >/dev/null 2>&1 9>&-; then
        # The Erlang node is up but AMQP is not listening yet: still booting (or app stopped).
        log "rabbitmq: node is up, waiting for AMQP"
        if ! wait_for_port 127.0.0.1 5672 60; then
            log "rabbitmq: starting the rabbit app"
            timeout 120 rabbitmqctl -q start_app >/dev/null 2>&1 9>&- || true
        fi
    else
        log "rabbitmq: starting (takes ~10-30 s)"
        [ "${CHARGEGRID_RABBIT_MGMT:-1}" = "0" ] || rabbit_mgmt_loopback_config || true
        as_root rabbitmq-server -detached >/dev/null 2>&1 ||
            {
                tail -n 20 /var/log/rabbitmq/startup_err /var/log/rabbitmq/startup_log >&2 2>/dev/null || true
                die "rabbitmq: rabbitmq-server -detached failed"
            }
    fi
    wait_for_port 127.0.0.1 5672 180 || {
        tail -n 20 /var/log/rabbitmq/startup_err /var/log/rabbitmq/startup_log >&2 2>/dev/null || true
        die "rabbitmq: not listening on 127.0.0.1:5672"
    }
    timeout 120 rabbitmqctl -q await_startup >/dev/null 2>&1 9>&- || warn "rabbitmq: 'rabbitmqctl await_startup' did not confirm startup"
    RABBIT_MGMT=""
    [ "${CHARGEGRID_RABBIT_MGMT:-1}" = "0" ] && return 0
    if port_open 127.0.0.1 15672; then
        rabbit_mgmt_loopback_config || true
        RABBIT_MGMT=" (management :15672)"
        return 0
    fi
    # Enabling the plugin on a running node takes effect at once (no restart) and is persisted in
    # /etc/rabbitmq/enabled_plugins. Optional: any failure only warns.
    log "rabbitmq: enabling the management plugin (127.0.0.1:15672)"
    rabbit_mgmt_loopback_config || true
    timeout 30 rabbitmqctl -q eval \
        'application:set_env(rabbitmq_management, tcp_config, [{ip, "127.0.0.1"}, {port, 15672}]).' >/dev/null 2>&1 9>&- || true
    if timeout 120 rabbitmq-plugins -q enable rabbitmq_management >/dev/null 2>&1 9>&- &&
        wait_for_port 127.0.0.1 15672 30; then
        RABBIT_MGMT=" (management :15672)"
    else
        warn "rabbitmq: management plugin not available (optional; set CHARGEGRID_RABBIT_MGMT=0 to skip)"
    fi
}

# ---------------------------------------------------------------- Mosquitto
ensure_mosquitto() {
    if ! command -v mosquitto >/dev/null 2>&1; then
        apt_install mosquitto
    fi
    if port_open 127.0.0.1 1883; then
        log "mosquitto: already running (127.0.0.1:1883)"
    else
        log "mosquitto: starting"
        if id mosquitto >/dev/null 2>&1; then
            as_root install -d -o mosquitto -g mosquitto /run/mosquitto /var/log/mosquitto /var/lib/mosquitto
        fi
        as_root mosquitto -d -c /etc/mosquitto/mosquitto.conf ||
            {
                tail -n 20 /var/log/mosquitto/mosquitto.log >&2 2>/dev/null || true
                die "mosquitto: failed to start"
            }
    fi
    wait_for_port 127.0.0.1 1883 30 || die "mosquitto: not listening on 127.0.0.1:1883"
}

# ---------------------------------------------------------------- SecantusDB (MongoDB wire)
mongo_ping() {
    "$VENV_PY" - <<'EOF' >/dev/null 2>&1
from pymongo import MongoClient
c = MongoClient("mongodb://127.0.0.1:27017", serverSelectionTimeoutMS=2000, connectTimeoutMS=2000)
c.admin.command("ping")
EOF
}

secantus_pid_alive() {
    local pid
    pid="$(cat "$SECANTUS_PID" 2>/dev/null)" || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q secantus
}

ensure_secantus() {
    local i
    ensure_venv
    if port_open 127.0.0.1 27017; then
        log "secantusdb: already running (127.0.0.1:27017)"
    elif secantus_pid_alive; then
        log "secantusdb: process $(cat "$SECANTUS_PID") is starting"
    else
        log "secantusdb: starting (log $SECANTUS_LOG)"
        [ -f "$SECANTUS_LOG" ] && mv -f "$SECANTUS_LOG" "$SECANTUS_LOG.1"
        # Own session, no terminal, all fds redirected: survives this script and does not hold
        # the caller's (CI's) pipes open. Run from $CACHE so no ./secantusd.toml is picked up.
        (
            cd "$CACHE"
            setsid nohup "$VENV_PY" -m secantus --host 127.0.0.1 --port 27017 --storage-path ':memory:' \
                >"$SECANTUS_LOG" 2>&1 </dev/null 9>&- &
            echo $! >"$SECANTUS_PID"
        )
    fi
    wait_for_port 127.0.0.1 27017 60 || {
        tail -n 20 "$SECANTUS_LOG" >&2 2>/dev/null || true
        die "secantusdb: not listening on 127.0.0.1:27017"
    }
    for ((i = 0; i < 15; i++)); do
        mongo_ping && return 0
        sleep 1
    done
    die "secantusdb: 127.0.0.1:27017 accepts connections but does not answer a MongoDB ping"
}

# ---------------------------------------------------------------- main
PG_VER="" RABBIT_MGMT=""
ensure_postgres
ensure_redis
ensure_rabbitmq
ensure_mosquitto
ensure_secantus

for hp in 127.0.0.1:5432 127.0.0.1:6379 127.0.0.1:5672 127.0.0.1:1883 127.0.0.1:27017; do
    port_open "${hp%:*}" "${hp##*:}" || die "$hp went down"
done
log "services up: postgres $PG_VER :5432 (db $DB_NAME) | redis :6379 | rabbitmq :5672$RABBIT_MGMT | mosquitto :1883 | secantusdb :27017"
