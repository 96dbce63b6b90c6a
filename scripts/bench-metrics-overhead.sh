#!/usr/bin/env bash
# What the engine's counters cost: `wsloop serve --threads 1` built with the default `metrics` feature
# against the same server built without it (every counter update compiled out), measured with the same
# `wsloop bench`, rounds interleaved (on, off, on, off, ...), server pinned to CPU 0 and bench to CPU 1.
#
#   scripts/bench-metrics-overhead.sh [ROUNDS] [BENCH-ARGS...]
#   scripts/bench-metrics-overhead.sh 5 -c 100 -s 16 -p 16 -d 10s -t 1        (the default)
#
# Prints, per variant, the median messages/s and server CPU time per message (utime + stime from
# /proc/PID/stat over the whole run), then the ratio off/on.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS=${1:-5}
shift || true
ARGS=("$@")
[ ${#ARGS[@]} -gt 0 ] || ARGS=(-c 100 -s 16 -p 16 -d 10s -t 1)
cargo build --release --quiet
cargo build --release --quiet --no-default-features --features cli --target-dir target/nometrics
ON=target/release/wsloop
OFF=target/nometrics/release/wsloop
HZ=$(getconf CLK_TCK)
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for round in $(seq "$ROUNDS"); do
    for variant in on off; do
        bin=$ON
        [ "$variant" = off ] && bin=$OFF
        port=$(free_port)
        taskset -c 0 "$bin" serve --addr "127.0.0.1:$port" --threads 1 >/dev/null 2>&1 &
        server=$!
        sleep 0.5
        json=$(taskset -c 1 "$ON" bench "ws://127.0.0.1:$port/" "${ARGS[@]}" --json)
        cpu=$(awk -v hz="$HZ" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$server/stat")
        kill -TERM "$server"
        wait "$server" || true
        python3 - "$variant" "$cpu" "$json" >>"$RESULTS" <<'PY'
import json, sys
variant, cpu, doc = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
sent = doc["messages"]["sent"]
print(json.dumps({"variant": variant, "rate": doc["measured"]["messages_per_second"],
                  "ns_per_message": cpu * 1e9 / sent if sent else None}))
PY
        echo "round $round $variant: $(tail -n 1 "$RESULTS")" >&2
    done
done
python3 - "$RESULTS" "${ARGS[*]}" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = {}
for v in ("on", "off"):
    r = [x for x in rows if x["variant"] == v]
    med[v] = (statistics.median(x["rate"] for x in r), statistics.median(x["ns_per_message"] for x in r))
    print(f"metrics {v:3}: {med[v][0]:,.0f} msgs/s median, server {med[v][1]:.1f} ns CPU per message "
          f"({len(r)} rounds; rates {min(x['rate'] for x in r):,.0f}-{max(x['rate'] for x in r):,.0f})")
print(f"bench args: {sys.argv[2]}")
print(f"off/on: throughput {med['off'][0] / med['on'][0]:.3f}, server CPU per message {med['off'][1] / med['on'][1]:.3f}")
PY
