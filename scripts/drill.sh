#!/usr/bin/env bash
# Failure drills: `chargegrid all` (billing in process) under simulator load (RFID sessions with
# meter values, one every 1.5 s per charger) while RabbitMQ, PostgreSQL and Redis are restarted one after the
# other mid-run. Prints the figures RELIABILITY.md records: acknowledged transaction messages
# lost, ended sessions without exactly one invoice, events left unpublished, time to recover,
# and what the chargers saw.
#
#   bash scripts/drill.sh                  # DRILL_CHARGERS=100 DRILL_SECS=75, debug build
#   DRILL_PROFILE=release bash scripts/drill.sh
#
# It restarts the machine's own services: never run it beside the test suite.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
need_cmd jq "apt-get install jq"
need_cmd curl

OUT="${DRILL_OUT:-$REPO_ROOT/.run/drill/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
PROFILE="${DRILL_PROFILE:-debug}"
CHARGEGRID="$CARGO_TARGET_DIR/$PROFILE/chargegrid"
LOADTEST="$CARGO_TARGET_DIR/$PROFILE/loadtest"
# shellcheck source=loadtest/bench/common.sh
. "$REPO_ROOT/loadtest/bench/common.sh"
COMMANDS_FILE="$OUT/commands"
: >"$COMMANDS_FILE"
WATCH_PID=""
cleanup() {
    [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null
    for pid in "${SIM_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    stop_server
    # whatever happened, leave every service running
    bash "$REPO_ROOT/scripts/services.sh" >/dev/null 2>&1 || true
    drop_bench_databases
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${DRILL_SKIP_BUILD:-}" ]; then
    flag=""
    [ "$PROFILE" = release ] && flag="--release"
    cargo build $flag --bin chargegrid >&2
    cargo build $flag -p chargegrid-loadtest >&2
fi
bash "$REPO_ROOT/scripts/services.sh"

port=18095
chargers="${DRILL_CHARGERS:-100}"
secs="${DRILL_SECS:-75}"
export CHARGEGRID__AUTH__LOGIN_MAX_PER_CLIENT=1000000
export CHARGEGRID__DATABASE__MAX_CONNECTIONS=50
# the drill counts the SESSION_ENDED events written from the outbox: published ones are kept
# (the default deletes each once confirmed, ADR 016, fourth amendment)
export CHARGEGRID__EVENTS__OUTBOX_RETENTION_HOURS=72
start_chargegrid "$port" all
psql_q() { psql -w -X -q -At -F ' ' "$DATABASE_URL" -c "$1"; }
station="$(psql_q "INSERT INTO stations (id, name, latitude, longitude) VALUES (gen_random_uuid(), 'Drill station', 52.52, 13.405) RETURNING id" | head -1)"
psql_q "INSERT INTO chargers (id, station_id) SELECT 'drill-' || lpad(i::text, 6, '0'), '$station' FROM generate_series(0, $((chargers - 1))) i" >/dev/null
CHARGEGRID_USER_PASSWORD="drill admin password" "$CHARGEGRID" user create --email drill-admin@example.com \
    --name "Drill Admin" --role ADMIN >>"$OUT/user-create.log" 2>&1 || die "user create failed"
rfid_scenario "$OUT/drill.toml" drill "$port" "$chargers" 1.0 "$secs" 20 \
    drill-admin@example.com "drill admin password"
# /ready every 200 ms: when each service went down and came back, as the server saw it
(while true; do
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/ready" || true)"
    echo "$(date +%s.%N) $code"
    sleep 0.2
done) >"$OUT/ready.log" 2>/dev/null &
WATCH_PID=$!
sim_bg drill --scenario "$OUT/drill.toml"

pg_ver="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n1)"
restart() { # NAME: restarts one service; records when
    local started
    started="$(date +%s.%N)"
    case "$1" in
        rabbitmq) rabbitmqctl stop_app >/dev/null && rabbitmqctl start_app >/dev/null ;;
        postgresql) pg_ctlcluster --skip-systemctl-redirect "$pg_ver" main restart >/dev/null ;;
        redis)
            redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true
            bash "$REPO_ROOT/scripts/services.sh" >/dev/null
            ;;
    esac
    echo "$1 $started $(date +%s.%N)" >>"$OUT/restarts.log"
    log "restarted $1"
}
: >"$OUT/restarts.log"
sleep 15
restart rabbitmq
sleep 15
restart postgresql
sleep 15
restart redis
wait_sims
# billing gets up to 60 s to catch up (it stops waiting as soon as it has)
waited=0
while [ "$waited" -lt 60 ] && [ "$(psql_q "SELECT count(*) FROM sessions s LEFT JOIN invoices i ON i.session_id = s.id WHERE s.status = 'COMPLETED' AND i.id IS NULL")" != 0 ]; do
    sleep 1
    waited=$((waited + 1))
done
kill "$WATCH_PID" 2>/dev/null || true
WATCH_PID=""

started="$(j drill '.sessions.started')"
completed="$(j drill '.sessions.completed')"
stored_starts="$(psql_q "SELECT count(*) FROM charger_transactions")"
stored_stops="$(psql_q "SELECT count(*) FROM charger_transactions WHERE stopped_at IS NOT NULL")"
ended="$(psql_q "SELECT count(*) FROM sessions WHERE status = 'COMPLETED'")"
not_one="$(psql_q "SELECT count(*) FROM sessions s WHERE s.status = 'COMPLETED' AND (SELECT count(*) FROM invoices i WHERE i.session_id = s.id) <> 1")"
debits_not_one="$(psql_q "SELECT count(*) FROM (SELECT i.id FROM invoices i LEFT JOIN wallet_ledger l ON l.reference_id = i.id AND l.kind = 'INVOICE_PAYMENT' WHERE i.status = 'PAID' AND i.amount > 0 GROUP BY i.id HAVING count(l.id) <> 1) x")"
pending="$(psql_q "SELECT count(*) FROM outbox WHERE published_at IS NULL")"
ended_events="$(psql_q "SELECT count(*) FROM outbox WHERE event_type = 'SESSION_ENDED'")"
echo
echo "drill: $chargers chargers, $secs s, $PROFILE build, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD)"
echo "sessions the chargers saw started / completed / failed: $started / $completed / $(j drill '.sessions.failed') $(j drill '.sessions.failure_reasons | tostring')"
echo "acknowledged StartTransactions missing in Postgres: $(( started > stored_starts ? started - stored_starts : 0 )) (stored $stored_starts)"
echo "acknowledged StopTransactions missing in Postgres: $(( completed > stored_stops ? completed - stored_stops : 0 )) (stored $stored_stops)"
echo "ended sessions: $ended; without exactly one invoice: $not_one (after waiting $waited s); paid invoices (amount > 0) without exactly one wallet debit: $debits_not_one"
echo "SESSION_ENDED events: $ended_events; outbox events still unpublished: $pending"
echo "recovery (restart command done -> /ready 200 again), and /ready not 200 in total:"
while read -r name began done_at; do
    awk -v name="$name" -v began="$began" -v done="$done_at" '
        $1 >= began && $2 != 200 { down++ }
        $1 >= done && $2 == 200 && !back { back = $1 - done }
        END { printf "  %-10s restart took %.1f s; ready again %.1f s after it; %d of the 200 ms probes not ready\n", name, done - began, back, down }
    ' "$OUT/ready.log"
done <"$OUT/restarts.log"
echo "what the chargers saw: connections $(j drill '.connections | {failed, reconnects, closed_by_server}' | tr -d '\n ' ), call timeouts $(j drill '.call_timeouts'), protocol errors $(j drill '.protocol_errors | tostring'), StopTransaction p99 $(j drill '.latency_ms.StopTransaction.p99 // "n/a"') ms (max $(j drill '.latency_ms.StopTransaction.max // "n/a"') ms)"
echo "output: $OUT"
