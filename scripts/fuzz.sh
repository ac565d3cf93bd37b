#!/usr/bin/env bash
# Fuzzing: the OCPP fuzzer (in process, no server needed) and the GraphQL fuzzer against a
# `chargegrid serve` started here on a fresh database. Prints both tallies (RELIABILITY.md).
#
#   bash scripts/fuzz.sh                         # OCPP 10,000,000 frames, GraphQL 200,000 documents
#   FUZZ_OCPP=1000000 FUZZ_GRAPHQL=20000 bash scripts/fuzz.sh
#   FUZZ_ONLY=graphql bash scripts/fuzz.sh       # or ocpp
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
need_cmd curl

OUT="${FUZZ_OUT:-$REPO_ROOT/.run/fuzz/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
CHARGEGRID="$CARGO_TARGET_DIR/debug/chargegrid"
LOADTEST=""
# shellcheck source=loadtest/bench/common.sh
. "$REPO_ROOT/loadtest/bench/common.sh"
COMMANDS_FILE="$OUT/commands"
: >"$COMMANDS_FILE"
trap 'stop_server; drop_bench_databases' EXIT
trap 'exit 130' INT TERM

[ -n "${FUZZ_SKIP_BUILD:-}" ] || cargo build --bin chargegrid --example fuzz_ocpp --example fuzz_graphql >&2
only="${FUZZ_ONLY:-}"
status=0
if [ "$only" != graphql ]; then
    log "fuzz_ocpp: ${FUZZ_OCPP:-10000000} frames"
    "$CARGO_TARGET_DIR/debug/examples/fuzz_ocpp" --inputs "${FUZZ_OCPP:-10000000}" --seed "${FUZZ_SEED:-20261203}" |
        tee "$OUT/ocpp.txt" || status=1
fi
if [ "$only" != ocpp ]; then
    bash "$REPO_ROOT/scripts/services.sh" >/dev/null
    port=18097
    start_chargegrid "$port" serve
    log "fuzz_graphql: ${FUZZ_GRAPHQL:-200000} documents against :$port"
    "$CARGO_TARGET_DIR/debug/examples/fuzz_graphql" --url "http://127.0.0.1:$port" \
        --inputs "${FUZZ_GRAPHQL:-200000}" --seed "${FUZZ_SEED:-20261203}" | tee "$OUT/graphql.txt" || status=1
fi
log "output in $OUT"
exit "$status"
