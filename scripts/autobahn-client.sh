#!/usr/bin/env bash
# Run the Autobahn|Testsuite client cases (wstest -m fuzzingserver) with
# `wsloop autobahn-client` as the client under test, for users and CI.
#
#   scripts/autobahn-client.sh [CASES] [EXCLUDE]
#
#   CASES    comma-separated case patterns, default "*"
#   EXCLUDE  comma-separated case patterns, default "12.*,13.*"
#            (permessage-deflate is not implemented yet; the 9.* performance
#            cases stay in). Pass '' to exclude nothing.
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
EXCLUDE=${2-12.*,13.*}
AGENT=wsloop
# Run through `sh -c` (by the kit, or below) so that $AUTOBAHN_URL is expanded there.
# shellcheck disable=SC2016  # expanded by sh -c, not here
CLIENT_CMD='target/release/wsloop autobahn-client "$AUTOBAHN_URL" --agent wsloop'

cd "$ROOT"
REPORTS_DIR=$ROOT/autobahn-reports/client
mkdir -p "$REPORTS_DIR"

# --- helpers ----------------------------------------------------------------
# shellcheck disable=SC2016  # expanded by the inner bash
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null; }

free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local p
    for _ in $(seq 50); do
        p=$(( 20000 + RANDOM % 40000 ))
        port_open 127.0.0.1 "$p" || { echo "$p"; return; }
    done
    die "no free port found"
}

# "1.*, 2.1.1" -> ["1.*", "2.1.1"]
json_list() {
    local out="" item items=()
    IFS=',' read -r -a items <<<"$1" || true
    for item in "${items[@]}"; do
        item=${item//[[:space:]]/}
        [ -n "$item" ] || continue
        [[ "$item" =~ ^[0-9.*]+$ ]] || die "bad case pattern '$item' (use e.g. 1.*,9.1.1)"
        out="$out${out:+, }\"$item\""
    done
    printf '[%s]' "$out"
}

# Fallback summary from wstest's index.json: failing cases, then "N passed, M failed".
summarize_index() {
    command -v python3 >/dev/null 2>&1 || die "python3 is needed to summarize $1/index.json"
    python3 - "$1/index.json" "$2" <<'PY'
import json, sys
path, agent = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        cases = json.load(f).get(agent)
except (OSError, ValueError) as e:
    print("cannot read %s: %s" % (path, e), file=sys.stderr)
    sys.exit(2)
if not cases:
    print("no results for agent %s in %s" % (agent, path), file=sys.stderr)
    sys.exit(2)
ok_behavior = {"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"}
bad_close = {"FAILED", "WRONG CODE", "UNCLEAN"}
key = lambda c: [int(x) for x in c.split(".")]
failed = 0
for case in sorted(cases, key=key):
    r = cases[case]
    if r.get("behavior") not in ok_behavior or r.get("behaviorClose") in bad_close:
        failed += 1
        print("%-10s %-14s %-14s %s" % (case, r.get("behavior"), r.get("behaviorClose"), r.get("remoteCloseCode")))
print("%d passed, %d failed" % (len(cases) - failed, failed))
sys.exit(1 if failed else 0)
PY
}

CASES_JSON=$(json_list "$CASES")
EXCLUDE_JSON=$(json_list "$EXCLUDE")

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
