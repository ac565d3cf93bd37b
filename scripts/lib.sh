# shellcheck shell=bash
# Shared helpers for chargegrid's scripts. Source it, don't run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Defines: REPO_ROOT, CHARGEGRID_CACHE (exported), CACHE, VENV, VENV_PY, PY_REQUIREMENTS,
# and the functions log, warn, die, need_cmd, port_open, wait_for_port, apt_install, ensure_venv,
# ensure_chromium.

# Debian keeps the service binaries in /usr/sbin; a bare CI environment may not have it on PATH.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" ;; esac
export PATH

# shellcheck disable=SC2034 # used by the scripts that source this file
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Shared across clones of the repo (venv, SecantusDB log/pid, CI's cargo target dir).
export CHARGEGRID_CACHE="${CHARGEGRID_CACHE:-$HOME/.cache/chargegrid}"
CACHE="$CHARGEGRID_CACHE"
VENV="$CACHE/venv"
VENV_PY="$VENV/bin/python"

# Python side: SecantusDB (MongoDB-wire server used in place of MongoDB) and the third-party
# OCPP peer used by the tests. Pinned: the tests are written against these APIs.
# Changing this list makes ensure_venv reinstall on its next run.
PY_REQUIREMENTS=(secantusdb==0.7.0b3 ocpp==2.1.0 websockets==17.4 pymongo==4.20.0)

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
die() {
    printf '==> ERROR: %s\n' "$*" >&2
    exit 1
}

# need_cmd CMD [HINT]: fail unless CMD is on PATH.
need_cmd() {
    command -v "$1" >/dev/null 2>&1 || die "required command '$1' not found${2:+ ($2)}"
}

# port_open HOST PORT: true if a TCP connect succeeds (bash /dev/tcp, 2 s cap).
port_open() {
    # shellcheck disable=SC2016 # $1/$2 expand in the child bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" >/dev/null 2>&1
}

# wait_for_port HOST PORT TIMEOUT_SECONDS: poll until the port accepts, fail after TIMEOUT.
wait_for_port() {
    local host="$1" port="$2" timeout="${3:-30}" start=$SECONDS
    until port_open "$host" "$port"; do
        if ((SECONDS - start >= timeout)); then
            warn "$host:$port did not accept connections within ${timeout}s"
            return 1
        fi
        sleep 0.5
    done
}

# apt_install PKG...: non-interactive install; 'apt-get update' runs at most once per process.
# fd 9 (services.sh's lock) is closed so services started by a package's postinst don't hold it.
_APT_UPDATED=0
apt_install() {
    need_cmd apt-get "install $* by hand on a non-Debian machine"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        need_cmd sudo "run as root to install $*"
        sudo=(sudo -n)
    fi
    export DEBIAN_FRONTEND=noninteractive
    local out
    out="$(mktemp)"
    if [ "$_APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        if ! "${sudo[@]}" apt-get update -qq >"$out" 2>&1 </dev/null 9>&-; then
            cat "$out" >&2
            warn "apt-get update failed; trying the package lists already on disk"
        fi
        _APT_UPDATED=1
    fi
    log "apt-get install $*"
    # Output is shown only if the install fails.
    if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >"$out" 2>&1 </dev/null 9>&-; then
        cat "$out" >&2
        rm -f "$out"
        die "apt-get install $* failed"
    fi
    rm -f "$out"
}

# ensure_venv: create $VENV with python3 and install PY_REQUIREMENTS unless already there.
ensure_venv() {
    local want stamp="$VENV/.chargegrid-requirements"
    want="${PY_REQUIREMENTS[*]}"
    mkdir -p "$CACHE"
    # A venv whose interpreter went away (pyenv upgrade, moved cache) is rebuilt.
    if [ -d "$VENV" ] && ! "$VENV_PY" -c 'import sys' >/dev/null 2>&1; then
        warn "venv $VENV is broken; recreating it"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VENV_PY" ]; then
        command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
        if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
            rm -rf "$VENV"
            apt_install python3-venv
            python3 -m venv "$VENV" >/dev/null || die "python3 -m venv $VENV failed"
        fi
        log "python venv: created $VENV"
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] &&
        "$VENV_PY" -c 'import secantus, ocpp, websockets, pymongo' >/dev/null 2>&1; then
        log "python venv: ok ($VENV)"
        return 0
    fi
    log "python venv: pip install $want"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV_PY" -m pip install -q --no-input "${PY_REQUIREMENTS[@]}" >&2 ||
        die "pip install into $VENV failed"
    printf '%s\n' "$want" >"$stamp"
}

# ensure_chromium: Debian's headless Chromium and its WebDriver (the console's browser tests),
# installed only when missing. Exports CHROMEDRIVER for the tests.
ensure_chromium() {
    if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
        apt_install chromium chromium-driver
    fi
    CHROMEDRIVER="$(command -v chromedriver)"
    export CHROMEDRIVER
    log "chromium: $(chromium --version 2>/dev/null | head -1)"
}
