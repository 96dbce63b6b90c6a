#!/bin/bash
# Compressed echo vs plain: wsloop serve --deflate MODE and wsloop bench --deflate MODE (10 connections,
# 4 KiB text, 5 s after 1 s of warm-up), and the server process's CPU ticks (utime+stime) over the run.
# Needs cargo build --release first.   usage: scripts/bench-deflate-echo.sh off|shared|dedicated
cd "$(dirname "${BASH_SOURCE[0]}")/.."
port=$((19500 + RANDOM % 400))
target/release/wsloop serve --addr 127.0.0.1:$port --threads 1 --no-dashboard --ping-interval 0 --deflate $1 >/dev/null 2>&1 &
pid=$!
sleep 1
cpu() { awk '{print $14+$15}' /proc/$pid/stat; }
c0=$(cpu)
out=$(target/release/wsloop bench ws://127.0.0.1:$port/ -c 10 --size 4096 --text --duration 5s --warmup 1s --threads 1 --deflate $1 --quiet 2>&1)
c1=$(cpu)
kill $pid; wait $pid 2>/dev/null
echo "mode=$1 server_cpu_ticks=$((c1-c0)) (1 tick = 10 ms)"
echo "$out" | tail -12
