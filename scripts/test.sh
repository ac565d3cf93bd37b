#!/usr/bin/env bash
# The full chargegrid test suite: ensures the backing services, then runs every cargo test.
#
#   scripts/test.sh                      # cargo test --workspace --all-targets -- --test-threads=4
#   scripts/test.sh --release            # extra args go to cargo test, after --all-targets
#   TEST_THREADS=2 scripts/test.sh
#
# Exports for the tests: CHARGEGRID_PYTHON (venv python with ocpp, websockets, pymongo: the
# third-party OCPP peer) and DATABASE_URL (default postgres://postgres@127.0.0.1:5432/chargegrid).
# Exits with cargo's exit code.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

bash "$REPO_ROOT/scripts/services.sh"
# the operator console's browser tests (tests/api/console.rs) drive Debian's headless Chromium
ensure_chromium

export CHARGEGRID_PYTHON="$VENV_PY"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/${CHARGEGRID_DB_NAME:-chargegrid}}"

need_cmd cargo "install Rust with rustup"
log "cargo test --workspace --all-targets${*:+ $*} -- --test-threads=${TEST_THREADS:-4}"
exec cargo test --workspace --all-targets "$@" -- --test-threads="${TEST_THREADS:-4}"
