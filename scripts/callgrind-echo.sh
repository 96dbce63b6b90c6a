#!/usr/bin/env bash
# User-space instructions per echoed message of `wsloop serve --threads 1`, counted by callgrind, for
# two of the benchmark scenarios (docs/benchmarks.md names them):
#
#   (i)   wsloop bench -c 100 -s 16    -p 16 --binary -t 1     (100 connections x 16 B, 16 in flight)
#   (iii) wsloop bench -c 10  -s 65536 -p 1  --binary -t 1     (10 connections x 64 KiB, 1 in flight)
#
# Usage:
#   scripts/callgrind-echo.sh [options] [WSLOOP-BINARY | GIT-REVISION]
#
#   (nothing)        build this checkout (`cargo build --release --bin wsloop`, uncommitted changes
#                    included) and measure target/release/wsloop
#   WSLOOP-BINARY    an executable file: measure it as it is (nothing is built)
#   GIT-REVISION     anything `git rev-parse` knows (a192cc5, HEAD~1, a branch): its tree is exported
#                    with `git archive` into a temporary directory (no worktree, no change to this
#                    checkout) and built there with `cargo build --release --bin wsloop`; the build
#                    reuses the target directory target/callgrind-echo/ of this checkout (set
#                    CALLGRIND_ECHO_TARGET_DIR to change it), so only wsloop itself is recompiled
#                    after the first time. The temporary source tree is removed afterwards.
#
# Options:
#   --bench PATH     the `wsloop bench` binary that drives the server (default: the binary under test).
#                    When comparing two commits that also change the client side, pass the same bench
#                    to both runs, so that only the server differs.
#   --repeat K       measure every scenario K times (default 1); the line then lists every result
#                    and the spread (max - min) / min.
#   --scenarios L    comma-separated list of i,iii (default: i,iii).
#   --n-i N          N for (i) (default 100000; runs N and 2N messages)
#   --n-iii N        N for (iii) (default 2000; runs N and 2N messages)
#   -- ARGS...       extra arguments for `wsloop serve` (e.g. -- --ping-interval 0)
#
# Method: for each scenario the server runs twice under `valgrind --tool=callgrind`, on 127.0.0.1 with
# a port the kernel picks (--addr 127.0.0.1:0; the port is read from the server's first line), once
# while `wsloop bench -n N` runs and once with `-n 2N` (every run: a fresh server, the connections
# opened, N or 2N messages echoed, the bench's 1000 closes). The server is then stopped with SIGINT
# (graceful: it closes any remaining connection and exits 0; callgrind writes its file at exit) and the
# total instruction count of the process (all threads; the `summary:` line of the callgrind file) is
# read. Startup, handshakes, closes and shutdown cost the same in both runs, so
#
#     instructions per message = (I(2N) - I(N)) / N
#
# counts only the echo path (read, parse, unmask, handler, encode, write, the reactor's bookkeeping).
# User-space only: callgrind does not see the kernel. The count is deterministic up to how the kernel
# batches messages into reads and events into epoll_wait returns, so expect a spread of a few
# tenths of a percent between runs; compare two commits with --repeat 2 or more.
#
# Output: one line per scenario on stdout; progress on stderr. Exit status 0 when every run worked.
# Needs valgrind, python3 and (to build) cargo. Every temporary file and process is removed at exit,
# also on error or Ctrl-C.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=
REPEAT=1
SCENARIOS=i,iii
N_I=100000
N_III=2000
TARGET=
SERVE_ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
        --bench) BENCH=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --scenarios) SCENARIOS=$2; shift 2 ;;
        --n-i) N_I=$2; shift 2 ;;
        --n-iii) N_III=$2; shift 2 ;;
        --) shift; SERVE_ARGS=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "callgrind-echo: unknown option $1" >&2; exit 2 ;;
        *) [ -z "$TARGET" ] || { echo "callgrind-echo: one binary or revision only" >&2; exit 2; }
           TARGET=$1; shift ;;
    esac
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/callgrind-echo.XXXXXX")
SERVER_PID=
BENCH_PID=
cleanup() {
    local pid
    for pid in $BENCH_PID $SERVER_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

log() { echo "callgrind-echo: $*" >&2; }
die() { log "$*"; exit 1; }

command -v valgrind >/dev/null || die "valgrind not found"

# The binary under test.
if [ -z "$TARGET" ]; then
    log "building this checkout ($REPO)"
    (cd "$REPO" && cargo build --release --quiet --bin wsloop)
    BIN=$REPO/target/release/wsloop
    LABEL="checkout $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
    [ -z "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ] || LABEL="$LABEL+dirty"
elif [ -f "$TARGET" ] && [ -x "$TARGET" ]; then
    BIN=$(cd "$(dirname "$TARGET")" && pwd)/$(basename "$TARGET")
    LABEL="binary $BIN"
else
    rev=$(git -C "$REPO" rev-parse --verify --quiet "$TARGET^{commit}") \
        || die "$TARGET is neither an executable file nor a git revision"
    log "building $TARGET (${rev:0:7}) from git archive in $TMP/src"
    mkdir "$TMP/src"
    git -C "$REPO" archive "$rev" | tar -x -C "$TMP/src"
    target_dir=${CALLGRIND_ECHO_TARGET_DIR:-$REPO/target/callgrind-echo}
    (cd "$TMP/src" && CARGO_TARGET_DIR=$target_dir cargo build --release --quiet --bin wsloop)
    cp "$target_dir/release/wsloop" "$TMP/wsloop"
    rm -rf "$TMP/src"
    BIN=$TMP/wsloop
    LABEL="revision ${rev:0:7}"
fi
[ -n "$BENCH" ] || BENCH=$BIN
[ -x "$BENCH" ] || die "bench binary $BENCH is not executable"

# One server under callgrind, one bench run against it; sets RESULT to the server's total instructions.
# (Not run in a $(...) subshell: a failure must reach the EXIT trap of this shell, which stops the server.)
RESULT=
measure() {
    local n=$1; shift
    local out=$TMP/callgrind.out serve_log=$TMP/serve.log serve_err=$TMP/serve.err port= i rc
    rm -f "$out"
    # Created here, not by the redirections below: those run in the background child, maybe only after
    # the first look at the log.
    : >"$serve_log"
    : >"$serve_err"
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$BIN" serve --addr 127.0.0.1:0 --threads 1 ${SERVE_ARGS[@]+"${SERVE_ARGS[@]}"} \
        >"$serve_log" 2>"$serve_err" &
    SERVER_PID=$!
    for i in $(seq 600); do   # up to 60 s for valgrind to start the server
        port=$(sed -n 's|^wsloop serving on ws://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$serve_log")
        [ -n "$port" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$serve_err" >&2; die "the server exited at start"; }
        sleep 0.1
    done
    [ -n "$port" ] || die "the server did not start within 60 s"
    "$BENCH" bench "ws://127.0.0.1:$port/" "$@" -n "$n" --json >"$TMP/bench.json" 2>"$TMP/bench.err" &
    BENCH_PID=$!
    rc=0
    wait "$BENCH_PID" || rc=$?
    BENCH_PID=
    [ "$rc" -eq 0 ] || { cat "$TMP/bench.err" "$TMP/bench.json" >&2; die "wsloop bench $* -n $n failed ($rc)"; }
    python3 - "$TMP/bench.json" "$n" <<'PY' || die "the bench did not echo every message"
import json, sys
doc, n = json.load(open(sys.argv[1])), int(sys.argv[2])
m = doc["messages"]
sys.exit(0 if m["sent"] == n and m["received"] == n and doc["closes"].get("1000") == doc["connections"]["opened"] else 1)
PY
    kill -INT "$SERVER_PID" 2>/dev/null || true   # (a server run with an exit-when-idle flag may be gone)
    for i in $(seq 600); do   # up to 60 s for a graceful stop
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$SERVER_PID" 2>/dev/null && die "the server did not stop within 60 s of SIGINT"
    rc=0
    wait "$SERVER_PID" || rc=$?
    SERVER_PID=
    [ "$rc" -eq 0 ] || { cat "$serve_err" >&2; die "the server exited with status $rc"; }
    RESULT=$(sed -n 's/^summary: \([0-9]*\)$/\1/p' "$out")
    [ -n "$RESULT" ] || die "no summary line in the callgrind file"
}

log "server: $LABEL; bench: $BENCH; serve args: --threads 1 ${SERVE_ARGS[*]-}"
IFS=, read -r -a scenario_list <<<"$SCENARIOS"
for sc in "${scenario_list[@]}"; do
    case $sc in
        i) n=$N_I; args=(-c 100 -s 16 -p 16 --binary -t 1); name="(i) 100 conns x 16 B, 16 in flight" ;;
        iii) n=$N_III; args=(-c 10 -s 65536 -p 1 --binary -t 1); name="(iii) 10 conns x 64 KiB, 1 in flight" ;;
        *) die "unknown scenario $sc (i, iii)" ;;
    esac
    results=()
    for r in $(seq "$REPEAT"); do
        log "$sc run $r/$REPEAT: -n $n"
        measure "$n" "${args[@]}"
        one=$RESULT
        log "$sc run $r/$REPEAT: -n $((2 * n))"
        measure "$((2 * n))" "${args[@]}"
        two=$RESULT
        results+=("$one:$two")
    done
    python3 - "$name" "$n" "${results[@]}" <<'PY'
import sys
name, n, runs = sys.argv[1], int(sys.argv[2]), [tuple(map(int, r.split(":"))) for r in sys.argv[3:]]
per = [(two - one) / n for one, two in runs]
line = f"{name}: {per[0] if len(per) == 1 else sum(per) / len(per):,.1f} instructions/message"
line += " (" + "; ".join(f"I({n})={one:,} I({2 * n})={two:,} -> {p:,.1f}" for (one, two), p in zip(runs, per)) + ")"
if len(per) > 1:
    line += f" mean of {len(per)}, spread {(max(per) - min(per)) / min(per) * 100:.2f} %"
print(line)
PY
done
