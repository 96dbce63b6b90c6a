#!/usr/bin/env bash
# Measures `wsloop serve --threads 1` with `wsloop bench -t 1`, each pinned to its own CPU, and prints
# messages/s, latency and the CPU time each process spends per message.
#
#   scripts/bench-pinned.sh PORT BENCH-ARGS...
#   scripts/bench-pinned.sh 9201 -c 100 -s 16 -p 16 -d 10s -t 1
#
# Needs a release build (cargo build --release), taskset and python3. Server on CPU ${SERVER_CPU:-0},
# bench on CPU ${BENCH_CPU:-1}. The bench run should last at least 9 s (a 6 s window from 2 s in is
# sampled from /proc/PID/stat).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release/wsloop}
PORT=$1
shift
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
if ss -ltn 2>/dev/null | grep -q "127.0.0.1:$PORT "; then
    # SO_REUSEPORT would let a second server share the port silently: refuse instead.
    echo "port $PORT is already in use" >&2
    exit 1
fi
taskset -c "${SERVER_CPU:-0}" "$BIN" serve --addr "127.0.0.1:$PORT" --threads 1 >"$OUT/serve.out" 2>&1 &
S=$!
sleep 0.5
taskset -c "${BENCH_CPU:-1}" "$BIN" bench "ws://127.0.0.1:$PORT/" "$@" --json >"$OUT/bench.json" 2>"$OUT/bench.err" &
B=$!
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
sleep 2
s0=$(ticks $S); b0=$(ticks $B); t0=$(date +%s.%N)
sleep 6
s1=$(ticks $S); b1=$(ticks $B); t1=$(date +%s.%N)
rc=0
wait $B || rc=$?
read -r su ss < <(awk '{print $14" "$15}' "/proc/$S/stat")
kill -TERM $S
wait $S
HZ=$(getconf CLK_TCK)
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  load: $(cut -d' ' -f1-3 /proc/loadavg)  bench exit: $rc"
awk -v s=$((s1 - s0)) -v b=$((b1 - b0)) -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN {
    d = t1 - t0; printf "steady-state CPU over %.2f s: server %.0f%%  bench %.0f%%\n", d, 100*s/hz/d, 100*b/hz/d }'
python3 - "$su" "$ss" "$HZ" "$OUT/bench.json" <<'PY'
import json, sys
su, ss, hz = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
r = json.load(open(sys.argv[4]))
n, m, c, l = r["messages"]["received"], r["measured"], r["bench_cpu"], r["latency_us"]
print(f'msgs/s {m["messages_per_second"]:,.0f}  MB/s {m["megabytes_per_second"]:.2f}  received {n:,}')
print(f'latency us: p50 {l["p50"]} p90 {l["p90"]} p99 {l["p99"]} p99.9 {l["p99_9"]} max {l["max"]}')
print(f'server, whole run: user {su/hz:.2f} s, sys {ss/hz:.2f} s -> {(su+ss)/hz/n*1e9:.0f} ns CPU per message')
bm = m["received"]
print(f'bench, measured window: {c["percent_of_one_core"]:.0f}% of a core, user {c["user_seconds"]:.2f} s, '
      f'sys {c["system_seconds"]:.2f} s -> {(c["user_seconds"]+c["system_seconds"])/bm*1e9:.0f} ns CPU per message')
print("connections", r["connections"]["opened"], "opened,", r["connections"]["failed"], "failed; errors", json.dumps(r["errors"]))
PY
