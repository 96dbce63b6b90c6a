#!/usr/bin/env bash
# Run the Autobahn|Testsuite server cases (wstest -m fuzzingclient) against
# `wsloop serve`, for users and CI.
#
#   scripts/autobahn-server.sh [CASES] [EXCLUDE]
#
#   CASES    comma-separated case patterns, default "*"
#   EXCLUDE  comma-separated case patterns, default '' (every case runs,
#            the 9.* performance and the 12.*/13.* permessage-deflate ones
#            included)
#
# Builds `cargo build --release`, starts
# `target/release/wsloop serve --addr 127.0.0.1:PORT --threads 1 --deflate MODE` on a free
# port, runs the suite, stops the server (SIGTERM, then waits) and exits with
# the suite's status (0: no case failed, 1: some failed, 2: setup error).
# Reports: autobahn-reports/server/ (index.html, index.json, wstest.log,
# wsloop-server.log).
#
# Environment:
#   AUTOBAHN_DIR   the Autobahn kit (default: ../shared/autobahn next to the
#                  repository); its run-server-suite.sh is used when present
#   WSTEST         wstest to use (passed on to the kit; without the kit, the
#                  default is `wstest` from PATH)
#   AUTOBAHN_REPORTS_DIR  where the reports go (default autobahn-reports/server/); two runs at
#                  once need two directories
#   SKIP_BUILD=1   do not run cargo build (use the existing binary)
#   WSLOOP_LOG     RUST_LOG for the server (default: warn)
#   AUTOBAHN_TLS=1 serve wss:// (a certificate for 127.0.0.1 made with openssl;
#                  wstest does not verify it); reports in
#                  autobahn-reports/server-tls/ instead
#   DEFLATE        the server's --deflate mode: shared (default), dedicated or off
#   SERVE_FLAGS    more flags for wsloop serve, split on spaces (e.g. --io-uring, with a binary
#                  built with --features io-uring)
#   WSTEST_TIMEOUT, AUTOBAHN_VERBOSE, AUTOBAHN_PREFIX: see the kit's README
set -euo pipefail
PROG=autobahn-server.sh

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd -P)
AUTOBAHN_DIR=${AUTOBAHN_DIR:-$SCRIPT_DIR/../../shared/autobahn}

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
esac
[ $# -le 2 ] || { usage >&2; exit 2; }
CASES=${1:-*}
EXCLUDE=${2-}
AGENT=wsloop

cd "$ROOT"
REPORTS_DIR=${AUTOBAHN_REPORTS_DIR:-$ROOT/autobahn-reports/server}
[ "${AUTOBAHN_TLS:-}" != 1 ] || [ -n "${AUTOBAHN_REPORTS_DIR:-}" ] || REPORTS_DIR=$ROOT/autobahn-reports/server-tls
mkdir -p "$REPORTS_DIR"

# --- helpers (free_port, json_list, summarize_index, ...) ---------------------------
# shellcheck source=scripts/autobahn-common.sh
. "$SCRIPT_DIR/autobahn-common.sh"
# --- build and start the server ----------------------------------------------
if [ "${SKIP_BUILD:-}" != 1 ]; then
    say "cargo build --release"
    cargo build --release || die "cargo build --release failed"
fi
BIN=$ROOT/target/release/wsloop
[ -x "$BIN" ] || die "$BIN not found"

PORT=$(free_port)
URL=ws://127.0.0.1:$PORT
tls_flags=()
if [ "${AUTOBAHN_TLS:-}" = 1 ]; then
    URL=wss://127.0.0.1:$PORT
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$REPORTS_DIR/key.pem" -out "$REPORTS_DIR/cert.pem" 2>/dev/null \
        || die "openssl could not make a certificate"
    tls_flags=(--tls-cert "$REPORTS_DIR/cert.pem" --tls-key "$REPORTS_DIR/key.pem")
fi
server_log=$REPORTS_DIR/wsloop-server.log
: >"$server_log"

server_pid=
stop_server() {
    [ -n "$server_pid" ] || return 0
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 20); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$server_pid" 2>/dev/null; then
            say "server did not exit 10 s after SIGTERM; killing it"
            kill -KILL "$server_pid" 2>/dev/null || true
        fi
    else
        say "warning: the server had already exited (see $server_log)"
    fi
    local src=0
    wait "$server_pid" 2>/dev/null || src=$?
    [ "$src" -eq 0 ] || say "server exit status $src"
    server_pid=
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

DEFLATE=${DEFLATE:-shared}
read -r -a serve_flags <<<"${SERVE_FLAGS:-}"
say "starting $BIN serve --addr 127.0.0.1:$PORT --threads 1 --deflate $DEFLATE ${serve_flags[*]} (log: $server_log)"
RUST_LOG=${WSLOOP_LOG:-warn} "$BIN" serve --addr "127.0.0.1:$PORT" --threads 1 --deflate "$DEFLATE" "${tls_flags[@]}" \
    "${serve_flags[@]}" </dev/null >>"$server_log" 2>&1 &
server_pid=$!

for ((i = 0; ; i++)); do
    kill -0 "$server_pid" 2>/dev/null || { tail -n 20 "$server_log" >&2; die "wsloop serve exited during startup"; }
    port_open 127.0.0.1 "$PORT" && break
    [ "$i" -lt 60 ] || die "wsloop serve did not accept connections on port $PORT within 30 s"
    sleep 0.5
done

# --- run the suite ------------------------------------------------------------
rc=0
if [ -f "$AUTOBAHN_DIR/run-server-suite.sh" ]; then
    say "using the Autobahn kit in $AUTOBAHN_DIR"
    REPORTS_DIR=$REPORTS_DIR AGENT=$AGENT \
        bash "$AUTOBAHN_DIR/run-server-suite.sh" "$URL" "$CASES" "$EXCLUDE" || rc=$?
else
    WSTEST=${WSTEST:-wstest}
    command -v "$WSTEST" >/dev/null 2>&1 \
        || die "no Autobahn kit in $AUTOBAHN_DIR and no wstest (set AUTOBAHN_DIR, or WSTEST, or put wstest on PATH)"
    say "no Autobahn kit in $AUTOBAHN_DIR; using $WSTEST directly"
    rm -f "$REPORTS_DIR/index.json" "$REPORTS_DIR/index.html" "$REPORTS_DIR"/*_case_*.json \
          "$REPORTS_DIR"/*_case_*.html "$REPORTS_DIR/wstest.log"
    cat >"$REPORTS_DIR/fuzzingclient.json" <<JSON
{
   "outdir": "$REPORTS_DIR",
   "servers": [ { "agent": "$AGENT", "url": "$URL" } ],
   "cases": $CASES_JSON,
   "exclude-cases": $EXCLUDE_JSON,
   "exclude-agent-cases": {}
}
JSON
    cmd=("$WSTEST" -m fuzzingclient -s fuzzingclient.json)
    [ -z "${WSTEST_TIMEOUT:-}" ] || cmd=(timeout "$WSTEST_TIMEOUT" "${cmd[@]}")
    wrc=0
    (cd "$REPORTS_DIR" && exec "${cmd[@]}") \
        </dev/null >"$REPORTS_DIR/wstest.log" 2>&1 || wrc=$?
    [ "$wrc" -eq 0 ] || { tail -n 25 "$REPORTS_DIR/wstest.log" >&2; say "wstest exited with $wrc"; }
    summarize_index "$REPORTS_DIR" "$AGENT" || rc=$?
    [ "$wrc" -eq 0 ] || [ "$rc" -ne 0 ] || rc=1
fi

stop_server
say "report: $REPORTS_DIR/index.html"
exit "$rc"
