#!/usr/bin/env bash
# Start the whole chargegrid platform locally:
#   services -> cargo build -> chargegrid migrate -> chargegrid seed-demo -> chargegrid --dev all
#   + the bundled simulator connecting seed-demo's demo chargers (DEMO-000001...), so the
#   console (http://127.0.0.1:8080/console) shows chargers online at once
#
#   scripts/dev.sh              # runs `chargegrid --dev all`
#   scripts/dev.sh serve        # any other subcommand (and its args) instead of `all`
#
# Environment (all optional):
#   CHARGEGRID_PROFILE=debug|release   cargo profile (default debug: the build scripts/test.sh
#                                      then reuses; release for load runs, bench.sh builds its own)
#   CHARGEGRID_CONFIG=PATH             passed as --config PATH
#   CHARGEGRID_DEMO_CHARGERS=N         simulated demo chargers to connect (default 5, 0 = none)
#   JWT_SECRET, RUST_LOG, HTTP_BIND, DATABASE_URL   dev defaults below apply only when unset
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

bash "$REPO_ROOT/scripts/services.sh"

PROFILE="${CHARGEGRID_PROFILE:-debug}"
case "$PROFILE" in
    release) cargo_profile=(--release) ;;
    debug) cargo_profile=() ;;
    *) die "CHARGEGRID_PROFILE must be 'release' or 'debug', not '$PROFILE'" ;;
esac

# Dev-only defaults; anything already set in the environment wins.
if [ -z "${JWT_SECRET:-}" ]; then
    export JWT_SECRET="chargegrid-dev-only-jwt-secret-not-for-production"
    log "JWT_SECRET not set: using the built-in development secret"
fi
export RUST_LOG="${RUST_LOG:-info}"
export HTTP_BIND="${HTTP_BIND:-127.0.0.1:8080}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/${CHARGEGRID_DB_NAME:-chargegrid}}"

need_cmd cargo "install Rust with rustup"
log "cargo build --bin chargegrid --bin loadtest ($PROFILE)"
cargo build "${cargo_profile[@]}" -p chargegrid -p chargegrid-loadtest --bin chargegrid --bin loadtest

BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/$PROFILE/chargegrid"
[ -x "$BIN" ] || die "built binary not found at $BIN"
global=()
[ -n "${CHARGEGRID_CONFIG:-}" ] && global=(--config "$CHARGEGRID_CONFIG")

log "chargegrid migrate"
"$BIN" "${global[@]}" --dev migrate

log "chargegrid seed-demo"
if ! "$BIN" "${global[@]}" --dev seed-demo; then
    warn "chargegrid seed-demo failed (continuing without demo data)"
fi

if [ "$#" -eq 0 ]; then set -- all; fi

# The demo chargers: the simulator connects them once the server listens, and stops with the
# server.
DEMO_CHARGERS="${CHARGEGRID_DEMO_CHARGERS:-5}"
case "$DEMO_CHARGERS" in '' | *[!0-9]*) die "CHARGEGRID_DEMO_CHARGERS must be a number, not '$DEMO_CHARGERS'" ;; esac
simulator=
if [ "$DEMO_CHARGERS" -gt 0 ] && { [ "$1" = all ] || [ "$1" = serve ]; }; then
    port="${HTTP_BIND##*:}"
    SIM="$(dirname "$BIN")/loadtest"
    [ -x "$SIM" ] || die "simulator binary not found at $SIM"
    (
        wait_for_port 127.0.0.1 "$port" 300 || exit 0
        log "simulator: $DEMO_CHARGERS demo chargers (DEMO-000001...) -> ws://127.0.0.1:$port/ocpp"
        # the development-only password seed-demo printed; no sessions of their own (the
        # README's walkthrough starts one as the demo driver); a run lasts a week at most
        "$SIM" --url "ws://127.0.0.1:$port/ocpp" --chargers "$DEMO_CHARGERS" \
            --id-prefix DEMO- --first-index 1 --password demo-charger-password-dev \
            --ocpp201-share 0.4 --session-share 0 --meter-interval 5 \
            --duration 604800 --quiet >"$CACHE/dev-simulator.log" 2>&1 &
        sim=$!
        trap 'kill -TERM "$sim" 2>/dev/null; exit 0' TERM
        wait "$sim" || warn "the simulator stopped: $(tail -n 1 "$CACHE/dev-simulator.log")"
    ) &
    simulator=$!
fi

log "chargegrid --dev $* (HTTP on $HTTP_BIND)"
"$BIN" "${global[@]}" --dev "$@" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null' INT TERM
status=0
wait "$server" || status=$?
# a signal interrupts the first wait; wait again for the drain to finish
if kill -0 "$server" 2>/dev/null; then wait "$server" || status=$?; fi
[ -n "$simulator" ] && kill -TERM "$simulator" 2>/dev/null
exit "$status"
