#!/usr/bin/env bash
# User-space instructions per WebSocket handshake of `wsloop serve --threads 1`, counted by callgrind.
#
#   scripts/callgrind-handshake.sh [--n N] [--keep FILE] [WSLOOP-BINARY]   (default: N=1000, target/release/wsloop)
#
#   --keep FILE   also keep the callgrind file of the 2N run there (for callgrind_annotate --inclusive=yes)
#
# Runs the server twice under `valgrind --tool=callgrind` on 127.0.0.1 (a port the kernel picks), once
# while benches/peers' `idle-probe` opens N idle connections (8 threads of blocking handshakes) and once
# with 2N, stops it with SIGINT (graceful: every connection gets a close frame) and prints
# (I(2N) - I(N)) / N: accept, the upgrade request's parse, the 101, registration, the timer, and the close
# at shutdown, per connection; startup and shutdown cancel out. Needs valgrind and
# benches/peers/target/release/idle-probe (cd benches/peers && cargo build --release --bin idle-probe).
# Under valgrind the CPU has no SHA extensions, so SHA-1 runs its portable code here.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=1000
KEEP=
BIN=$ROOT/target/release/wsloop
while [ $# -gt 0 ]; do
    case $1 in
        --n) N=${2:?}; shift 2 ;;
        --keep) KEEP=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) BIN=$1; shift ;;
    esac
done
PROBE=$ROOT/benches/peers/target/release/idle-probe
command -v valgrind >/dev/null || { echo "callgrind-handshake: valgrind not found" >&2; exit 2; }
[ -x "$PROBE" ] || { echo "callgrind-handshake: build $PROBE first" >&2; exit 2; }
[ -x "$BIN" ] || { echo "callgrind-handshake: no $BIN" >&2; exit 2; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/callgrind-handshake.XXXXXX")
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

count() {   # N: total instructions of one server run while N connections are opened
    local out=$TMP/cg.$1 port=
    valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" serve --addr 127.0.0.1:0 --threads 1 \
        >"$TMP/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 600); do
        port=$(grep -o 'serving on ws://127.0.0.1:[0-9]*' "$TMP/server.log" | head -1 | sed 's/.*://') || true
        [ -n "$port" ] && break
        sleep 0.1
    done
    # count runs in $(...), where the EXIT trap does not apply: stop the server here on failure.
    [ -n "$port" ] || { echo "callgrind-handshake: the server did not start" >&2; kill -KILL "$SERVER_PID"; exit 1; }
    "$PROBE" "127.0.0.1:$port" --pid "$SERVER_PID" -n "$1" >"$TMP/probe.json" 2>"$TMP/probe.err" ||
        { echo "callgrind-handshake: idle-probe failed: $(tail -c 300 "$TMP/probe.err")" >&2; kill -KILL "$SERVER_PID"; exit 1; }
    kill -INT "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=
    awk '/^summary:/ { print $2 }' "$out"
}
a=$(count "$N")
b=$(count $((2 * N)))
[ -z "$KEEP" ] || cp "$TMP/cg.$((2 * N))" "$KEEP"
python3 -c "import sys; a, b, n = map(int, sys.argv[1:]); print(f'{(b - a) / n:.0f} instructions per handshake (I({n})={a:,} I({2*n})={b:,})')" "$a" "$b" "$N"
