#!/usr/bin/env bash
# Run the Autobahn|Testsuite client cases (wstest -m fuzzingserver) with
# `wsloop autobahn-client` as the client under test, for users and CI.
#
#   scripts/autobahn-client.sh [CASES] [EXCLUDE]
#
#   CASES    comma-separated case patterns, default "*"
#   EXCLUDE  comma-separated case patterns, default '' (every case runs,
#            the 9.* performance and the 12.*/13.* permessage-deflate ones
#            included)
#
# Builds `cargo build --release`, starts the fuzzing server on a free port and
# runs `target/release/wsloop autobahn-client "$AUTOBAHN_URL" --agent wsloop`
# against it, then exits with the suite's status (0: no case failed, 1: some
# failed or the client failed, 2: setup error).
# Reports: autobahn-reports/client/ (index.html, index.json, wstest.log).
#
# Environment:
#   AUTOBAHN_DIR   the Autobahn kit (default: ../shared/autobahn next to the
#                  repository); its run-client-suite.sh is used when present
#   WSTEST         wstest to use (passed on to the kit; without the kit, the
#                  default is `wstest` from PATH)
#   AUTOBAHN_REPORTS_DIR  where the reports go (default autobahn-reports/client/); two runs at
#                  once need two directories
#   SKIP_BUILD=1   do not run cargo build (use the existing binary)
#   CLIENT_TIMEOUT kill the client after this many seconds (default: no limit)
#   AUTOBAHN_VERBOSE, AUTOBAHN_PREFIX: see the kit's README
set -euo pipefail
PROG=autobahn-client.sh

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
# Run through `sh -c` (by the kit, or below) so that $AUTOBAHN_URL is expanded there.
# shellcheck disable=SC2016  # expanded by sh -c, not here
CLIENT_CMD='target/release/wsloop autobahn-client "$AUTOBAHN_URL" --agent wsloop'

cd "$ROOT"
REPORTS_DIR=${AUTOBAHN_REPORTS_DIR:-$ROOT/autobahn-reports/client}
mkdir -p "$REPORTS_DIR"

# --- helpers (free_port, json_list, summarize_index, ...) ---------------------------
# shellcheck source=scripts/autobahn-common.sh
. "$SCRIPT_DIR/autobahn-common.sh"
if [ "${SKIP_BUILD:-}" != 1 ]; then
    say "cargo build --release"
    cargo build --release || die "cargo build --release failed"
fi
[ -x "$ROOT/target/release/wsloop" ] || die "$ROOT/target/release/wsloop not found"

# --- with the kit -------------------------------------------------------------
if [ -f "$AUTOBAHN_DIR/run-client-suite.sh" ]; then
    say "using the Autobahn kit in $AUTOBAHN_DIR"
    rc=0
    CASES=$CASES EXCLUDE=$EXCLUDE AGENT=$AGENT REPORTS_DIR=$REPORTS_DIR \
        bash "$AUTOBAHN_DIR/run-client-suite.sh" 0 "$CLIENT_CMD" || rc=$?
    say "report: $REPORTS_DIR/index.html"
    exit "$rc"
fi

# --- without the kit: wstest from WSTEST or PATH --------------------------------
WSTEST=${WSTEST:-wstest}
command -v "$WSTEST" >/dev/null 2>&1 \
    || die "no Autobahn kit in $AUTOBAHN_DIR and no wstest (set AUTOBAHN_DIR, or WSTEST, or put wstest on PATH)"
say "no Autobahn kit in $AUTOBAHN_DIR; using $WSTEST directly"
rm -f "$REPORTS_DIR/index.json" "$REPORTS_DIR/index.html" "$REPORTS_DIR"/*_case_*.json \
      "$REPORTS_DIR"/*_case_*.html "$REPORTS_DIR/wstest.log"
PORT=$(free_port)
URL=ws://127.0.0.1:$PORT
cat >"$REPORTS_DIR/fuzzingserver.json" <<JSON
{
   "url": "$URL",
   "outdir": "$REPORTS_DIR",
   "cases": $CASES_JSON,
   "exclude-cases": $EXCLUDE_JSON,
   "exclude-agent-cases": {}
}
JSON

wstest_pid=
stop_wstest() {
    [ -n "$wstest_pid" ] || return 0
    kill -TERM "$wstest_pid" 2>/dev/null || true
    for _ in $(seq 10); do
        kill -0 "$wstest_pid" 2>/dev/null || break
        sleep 0.5
    done
    kill -KILL "$wstest_pid" 2>/dev/null || true
    wait "$wstest_pid" 2>/dev/null || true
    wstest_pid=
}
trap stop_wstest EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

(cd "$REPORTS_DIR" && exec "$WSTEST" -m fuzzingserver -s fuzzingserver.json) \
    </dev/null >"$REPORTS_DIR/wstest.log" 2>&1 &
wstest_pid=$!
for ((i = 0; ; i++)); do
    kill -0 "$wstest_pid" 2>/dev/null || { tail -n 20 "$REPORTS_DIR/wstest.log" >&2; die "wstest fuzzingserver exited"; }
    port_open 127.0.0.1 "$PORT" && break
    [ "$i" -lt 60 ] || die "wstest fuzzingserver did not listen on port $PORT within 30 s"
    sleep 0.5
done

say "client suite: $URL cases=$CASES_JSON exclude=$EXCLUDE_JSON"
crc=0
client=(sh -c "$CLIENT_CMD")
[ -z "${CLIENT_TIMEOUT:-}" ] || client=(timeout "$CLIENT_TIMEOUT" "${client[@]}")
AUTOBAHN_URL=$URL AUTOBAHN_PORT=$PORT AUTOBAHN_AGENT=$AGENT "${client[@]}" </dev/null || crc=$?
[ "$crc" -eq 0 ] || say "client exited with $crc"
stop_wstest

rc=0
summarize_index "$REPORTS_DIR" "$AGENT" || rc=$?
[ "$crc" -eq 0 ] || [ "$rc" -eq 2 ] || rc=1
say "report: $REPORTS_DIR/index.html"
exit "$rc"
