#!/usr/bin/env bash
# The full chargegrid test suite: ensures the backing services, then runs every cargo test.
#
#   scripts/test.sh                      # cargo test --workspace --all-targets -- --test-threads=4
#   scripts/test.sh --release            # extra args go to cargo test, after --all-targets
#   TEST_THREADS=2 scripts/test.sh
#
# Exports for the tests: CHARGEGRID_PYTHON (venv python with ocpp, websockets, pymongo: the
# third-party OCPP peer) and DATABASE_URL (default postgres://postgres@127.0.0.1:5432/chargegrid).
# The whole run (no extra args) also writes the status column of docs/conformance.md from its
# results (scripts/conformance.py); in CI (CI=true) it checks the committed file instead, so
# the file can only claim what a run showed. The run's output is kept in a temporary file
# (its name is printed at the end).
# Exits with cargo's exit code (1 when the conformance file disagrees with the run).
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
RUN_LOG="$(mktemp "${TMPDIR:-/tmp}/chargegrid-test-run.XXXXXX")"
set +e
cargo test --workspace --all-targets "$@" -- --test-threads="${TEST_THREADS:-4}" 2>&1 | tee "$RUN_LOG"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -eq 0 ] && [ "$#" -eq 0 ]; then
    if [ "${CI:-}" = "true" ]; then
        log "scripts/conformance.py --check (docs/conformance.md against this run)"
        python3 scripts/conformance.py --log "$RUN_LOG" --check || status=1
    else
        log "scripts/conformance.py (docs/conformance.md from this run)"
        python3 scripts/conformance.py --log "$RUN_LOG" || status=1
    fi
fi
log "test output kept in $RUN_LOG"
exit "$status"
