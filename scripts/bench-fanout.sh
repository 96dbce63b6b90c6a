#!/usr/bin/env bash
# Cross-node fan-out through Redis beside single-node fan-out, in the same run (examples/fanout.rs):
# one topic; NODES in-process nodes sharing it through a fresh redis-server (free port, no persistence,
# killed at the end) with SUBS subscribers each, against one node without a broker holding NODES x SUBS.
# Publishes come from node 0 (Handle::publish_binary, 64-byte payloads carrying their send time); every
# delivery's latency is publish to the subscriber's on_message (all in one process, one clock).
#
#   scripts/bench-fanout.sh [NODES] [SUBS] [DURATION] [RATE]
#   scripts/bench-fanout.sh 3 3000 3s 8        (the default)
#
# Three measurements, each for both cases:
#   1. closed loop, 4 messages in flight: the deliveries/s the setup sustains (latency includes the
#      queueing of those 4);
#   2. open loop at RATE publishes/s (set it to about half of what 1. sustains): p50/p99 latency;
#   3. many small fan-outs (NODES x 10 subscribers, 256 in flight): what the broker path carries in
#      messages/s.
# Each subscriber is two sockets in this one process: NODES x SUBS x 2 must stay under `ulimit -n`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
NODES=${1:-3}
SUBS=${2:-3000}
DURATION=${3:-3s}
RATE=${4:-8}
REDIS_SERVER=${WSLOOP_REDIS_SERVER:-/usr/bin/redis-server}
[ -x "$REDIS_SERVER" ] || { echo "needs $REDIS_SERVER: apt-get install redis-server" >&2; exit 1; }
need=$((NODES * SUBS * 2 + 100))
if [ "$(ulimit -n)" -lt "$need" ]; then
    ulimit -n "$need" 2>/dev/null || { echo "needs ulimit -n >= $need (have $(ulimit -n))" >&2; exit 1; }
fi
cargo build --release --quiet --features redis --example fanout
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
redis=$!
trap 'kill "$redis" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $("$REDIS_SERVER" --version | cut -d' ' -f1-3), commit $(git rev-parse --short HEAD)"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
bin=target/release/examples/fanout
url="redis://127.0.0.1:$port/"
hz=$(getconf CLK_TCK)
redis_cpu() { awk '{print $14 + $15}' "/proc/$redis/stat"; }
# Each run, then the CPU time redis-server used during it (user + system, from /proc).
run() {
    local before
    before=$(redis_cpu)
    "$bin" --redis "$url" --nodes "$NODES" "$@"
    echo "       redis-server CPU during this run: $(awk -v a="$before" -v b="$(redis_cpu)" -v hz="$hz" 'BEGIN { printf "%.2f s", (b - a) / hz }')"
}
run --subscribers "$SUBS" --duration "$DURATION" --window 4
run --subscribers "$SUBS" --duration "$DURATION" --rate "$RATE"
run --subscribers 10 --duration "$DURATION" --window 256
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
