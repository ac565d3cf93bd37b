#!/usr/bin/env bash
# Start the whole chargegrid platform locally:
#   services -> cargo build -> chargegrid migrate -> chargegrid seed-demo -> chargegrid --dev all
#
#   scripts/dev.sh              # runs `chargegrid --dev all`
#   scripts/dev.sh serve        # any other subcommand (and its args) instead of `all`
#
# Environment (all optional):
#   CHARGEGRID_PROFILE=release|debug   cargo profile (default release)
#   CHARGEGRID_CONFIG=PATH             passed as --config PATH
#   JWT_SECRET, RUST_LOG, HTTP_BIND, DATABASE_URL   dev defaults below apply only when unset
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

bash "$REPO_ROOT/scripts/services.sh"

PROFILE="${CHARGEGRID_PROFILE:-release}"
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
export HTTP_BIND="${HTTP_BIND:-0.0.0.0:8080}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/${CHARGEGRID_DB_NAME:-chargegrid}}"

need_cmd cargo "install Rust with rustup"
log "cargo build --bin chargegrid ($PROFILE)"
cargo build "${cargo_profile[@]}" --bin chargegrid

BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/$PROFILE/chargegrid"
[ -x "$BIN" ] || die "built binary not found at $BIN"
global=()
[ -n "${CHARGEGRID_CONFIG:-}" ] && global=(--config "$CHARGEGRID_CONFIG")

log "chargegrid migrate"
"$BIN" "${global[@]}" migrate

log "chargegrid seed-demo"
if ! "$BIN" "${global[@]}" seed-demo; then
    warn "chargegrid seed-demo failed (continuing without demo data)"
fi

if [ "$#" -eq 0 ]; then set -- all; fi
log "chargegrid --dev $* (HTTP on $HTTP_BIND)"
exec "$BIN" "${global[@]}" --dev "$@"
