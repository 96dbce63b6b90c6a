#!/bin/bash
# Compressed echo vs plain: an echo server, and `wsloop bench --deflate MODE` against it (10 connections,
# 4 KiB text, 5 s after 1 s of warm-up), with the server process's CPU ticks (utime+stime) over the run.
# Needs `cargo build --release` first.
#
#   scripts/bench-deflate-echo.sh off|shared|dedicated [SERVER COMMAND WITH {PORT}]
#
# Without a server command: `wsloop serve --threads 1 --ping-interval 0 --deflate MODE`. E.g.
#   NODE_PATH=target/deflate-node/node_modules scripts/bench-deflate-echo.sh shared node benches/peers/node/echo.js {PORT} --deflate
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ $# -lt 1 ]; then
    echo "usage: $0 off|shared|dedicated [SERVER COMMAND WITH {PORT}]" >&2
    exit 2
fi
mode=$1
shift
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ $# -eq 0 ]; then
    set -- target/release/wsloop serve --addr "127.0.0.1:{PORT}" --threads 1 --no-dashboard --ping-interval 0 --deflate "$mode"
fi
cmd=()
for arg in "$@"; do
    cmd+=("${arg/"{PORT}"/$port}")
done
"${cmd[@]}" >/dev/null 2>&1 &
pid=$!
sleep 1.5
cpu() { awk '{print $14+$15}' "/proc/$pid/stat"; }
c0=$(cpu)
out=$(timeout 60 target/release/wsloop bench "ws://127.0.0.1:$port/" -c 10 --size 4096 --text --duration 5s \
    --warmup 1s --threads 1 --deflate "$mode" --quiet 2>&1)
c1=$(cpu)
kill "$pid"
wait "$pid" 2>/dev/null
echo "server: ${cmd[*]} (deflate $mode) cpu_ticks=$((c1 - c0)) (1 tick = 10 ms)"
echo "$out" | tail -7
