# shellcheck shell=bash
# Helpers for scripts/bench.sh: starting and stopping the servers under test, reading their
# memory and CPU from /proc, running the simulator with its command recorded, and writing
# BENCHMARKS.md sections. Source it after scripts/lib.sh.
#
# Expects: REPO_ROOT, OUT (this run's output directory), LOADTEST and CHARGEGRID (binaries).

# Every command a benchmark ran, in order, for the "exact commands" part of its section.
COMMANDS_FILE=""

# record CMD...: remember a command line (shell-quoted) for the current section.
record() {
    printf '%q ' "$@" | sed 's/ $//' >>"$COMMANDS_FILE"
    printf '\n' >>"$COMMANDS_FILE"
}

# begin_section NAME: start collecting commands for a section.
SECTION_LOAD=""
begin_section() {
    # the machine may be shared: say how busy it was before this benchmark started
    SECTION_LOAD="$(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)"
    COMMANDS_FILE="$OUT/$1.commands"
    : >"$COMMANDS_FILE"
}

# rss_kib PID: resident set size in KiB (VmRSS).
rss_kib() {
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# cpu_secs PID: user+system CPU seconds used so far.
cpu_secs() {
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"
}

# fd_count PID: open file descriptors.
fd_count() {
    find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}

# wait_http URL SECONDS: poll until URL answers 2xx.
wait_http() {
    local url="$1" limit="${2:-60}" start=$SECONDS
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        ((SECONDS - start < limit)) || return 1
        sleep 0.5
    done
}

# wait_ready_line FILE SECONDS: wait until a peer printed "ready".
wait_ready_line() {
    local file="$1" limit="${2:-60}" start=$SECONDS
    until grep -q '^ready' "$file" 2>/dev/null; do
        ((SECONDS - start < limit)) || return 1
        sleep 0.5
    done
}

SERVER_PID=""

# start_chargegrid PORT [SUBCOMMAND]: a fresh database, `chargegrid migrate`, then `chargegrid serve`
# (or SUBCOMMAND, e.g. `all` for the server with the billing and notification workers).
start_chargegrid() {
    local port="$1" mode="${2:-serve}" db
    db="cg_bench_$(date +%s)_$RANDOM"
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
    export MONGODB_URL="mongodb://127.0.0.1:27017/$db"
    export JWT_SECRET="bench-secret-bench-secret-bench-secret-0"
    export NODE_ID="bench"
    export RUST_LOG="${BENCH_RUST_LOG:-warn}"
    export CHARGEGRID__OCPP__AUTO_PROVISION=true
    export CHARGEGRID__OCPP__AUTO_ACCEPT_PROVISIONED=true
    # the load comes from three loopback addresses and a few thousand simulated drivers: the
    # per-client limits meant for the internet would measure themselves, not the server
    export CHARGEGRID__GRAPHQL__REQUESTS_PER_SEC=1000000
    export CHARGEGRID__GRAPHQL__REQUEST_BURST=1000000
    export CHARGEGRID__GRAPHQL__MAX_SOCKETS_PER_ADDRESS=1000000
    export CHARGEGRID__SESSIONS__MAX_STARTS_PER_MINUTE=1000000
    export CHARGEGRID__REDIS__KEY_PREFIX="$db"
    # exchanges and queues of its own, deleted when unused: a `serve` has no billing worker, and
    # its SESSION_ENDED events left in a shared durable queue would reach the next run's
    export CHARGEGRID__EVENTS__NAMESPACE="$db"
    export CHARGEGRID__EVENTS__EPHEMERAL=true
    record env RUST_LOG="$RUST_LOG" CHARGEGRID__OCPP__AUTO_PROVISION=true CHARGEGRID__OCPP__AUTO_ACCEPT_PROVISIONED=true DATABASE_URL="$DATABASE_URL" "$CHARGEGRID" migrate
    "$CHARGEGRID" migrate >"$OUT/server-migrate.log" 2>&1 || die "chargegrid migrate failed (see $OUT/server-migrate.log)"
    record env HTTP_BIND="127.0.0.1:$port" "$CHARGEGRID" "$mode"
    HTTP_BIND="127.0.0.1:$port" "$CHARGEGRID" "$mode" >>"$OUT/server-$port.log" 2>&1 &
    SERVER_PID=$!
    BENCH_DATABASES+=("$db")
    wait_http "http://127.0.0.1:$port/healthz" 60 || die "chargegrid serve did not start (see $OUT/server-$port.log)"
}

# start_python_peer PORT
start_python_peer() {
    local port="$1"
    record "$VENV_PY" loadtest/peers/python_csms.py --port "$port"
    "$VENV_PY" "$REPO_ROOT/loadtest/peers/python_csms.py" --port "$port" >"$OUT/python-$port.log" 2>&1 &
    SERVER_PID=$!
    wait_ready_line "$OUT/python-$port.log" 60 || die "the Python peer did not start (see $OUT/python-$port.log)"
}

# start_node_peer PORT
start_node_peer() {
    local port="$1"
    record node loadtest/peers/node-csms/server.js --port "$port"
    node "$REPO_ROOT/loadtest/peers/node-csms/server.js" --port "$port" >"$OUT/node-$port.log" 2>&1 &
    SERVER_PID=$!
    wait_ready_line "$OUT/node-$port.log" 60 || die "the Node peer did not start (see $OUT/node-$port.log)"
}

# stop_server: SIGTERM the server under test, SIGKILL after 10 s.
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 20; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.5
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# drop_bench_databases: remove the databases this run created.
BENCH_DATABASES=()
drop_bench_databases() {
    local db
    for db in "${BENCH_DATABASES[@]}"; do
        psql -w -X -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
    BENCH_DATABASES=()
}

# sim NAME ARGS...: run the simulator, report to $OUT/NAME.json, log to $OUT/NAME.log.
sim() {
    local name="$1"
    shift
    record "$LOADTEST" "$@" --quiet --report "$name.json"
    "$LOADTEST" "$@" --quiet --report "$OUT/$name.json" >"$OUT/$name.log" 2>&1
}

# sim_bg NAME ARGS...: the same in the background; the pid is appended to SIM_PIDS.
SIM_PIDS=()
sim_bg() {
    local name="$1"
    shift
    record "$LOADTEST" "$@" --quiet --report "$name.json" '&'
    "$LOADTEST" "$@" --quiet --report "$OUT/$name.json" >"$OUT/$name.log" 2>&1 &
    SIM_PIDS+=($!)
}

# wait_sims: wait for the background simulators.
wait_sims() {
    local pid
    for pid in "${SIM_PIDS[@]}"; do
        wait "$pid" || warn "simulator $pid exited with status $?"
    done
    SIM_PIDS=()
}

# rfid_scenario FILE NAME PORT CHARGERS SHARE DURATION DRAIN ADMIN_EMAIL ADMIN_PASSWORD: SHARE of
# CHARGERS (provisioned as NAME-000000...) run 1 s RFID sessions, each charger one every 1.5 s
# (sessions.every_secs), and MeterValues every second; 100 drivers are registered and funded by
# the ADMIN for their tags. Used by the invoice-latency benchmark and by scripts/drill.sh.
rfid_scenario() {
    cat >"$1" <<EOF
# generated by $(basename "$0"): $5 of $4 chargers run 1 s RFID sessions, one every 1.5 s
# (a fixed cadence with phases spread evenly: the offered rate does not fall with the server's
# latency while a session fits in its period), and MeterValues every second.
name = "$2"
urls = ["ws://127.0.0.1:$3/ocpp"]
source_ips = ["127.0.0.2", "127.0.0.3"]
chargers = $4
id_prefix = "$2-"
ramp_up_per_sec = 1000.0
duration_secs = $6.0
drain_secs = $7.0
warmup_secs = 3.0
meter_interval_secs = 1.0

[heartbeat]
mode = "interval"
interval_secs = 60.0

[sessions]
charger_share = $5
per_charger = 100000
local_share = 1.0
start_after_secs = [1.0, 2.0]
length_secs = 1.0
gap_secs = 0.5
every_secs = 1.5

[app]
users = 100
top_up = "500.00"
operator_email = "$8"
operator_password = "$9"
EOF
}

# j FILE FILTER: a jq value from a report.
j() {
    jq -r "$2" "$OUT/$1.json"
}

# machine_cell NAME: how busy the machine was over a report's measured window and the cores its
# busiest processes used ("n/a" where the simulator could not read /proc).
machine_cell() {
    jq -r 'if .machine == null then "n/a" else
        "\((.machine.busy_share * 100) | round) % (" +
        ([.machine.cores_by_process | to_entries | sort_by(-.value) | .[:4][] | "\(.key) \(.value * 100 | round / 100)"] | join(", ")) +
        ")" end' "$OUT/$1.json"
}

# stamp: the provenance line of a section.
stamp() {
    # shellcheck disable=SC2016 # the backticks are Markdown
    printf 'Measured %s on %s (%s cores, %s GiB RAM), commit `%s`%s; load average when it started: %s\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$CPU_MODEL" "$(nproc)" "$RAM_GIB" "$GIT_COMMIT" "$GIT_DIRTY" "$SECTION_LOAD"
}

# commands_block: the recorded commands as a fenced block.
commands_block() {
    printf '<details><summary>Exact commands</summary>\n\n```sh\n'
    cat "$COMMANDS_FILE"
    printf '```\n\n</details>\n'
}

# write_section NAME FILE: replace the section in BENCHMARKS.md with FILE.
write_section() {
    python3 "$REPO_ROOT/loadtest/bench/section.py" "$REPO_ROOT/BENCHMARKS.md" "$1" <"$2"
    log "BENCHMARKS.md: section '$1' updated"
}

# verdict VALUE OP TARGET: "met" or "**missed**" (OP is >= or <=).
verdict() {
    if awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { exit !((op == ">=" && v >= t) || (op == "<=" && v <= t)) }'; then
        printf 'met'
    else
        printf '**missed**'
    fi
}
