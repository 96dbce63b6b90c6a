#!/usr/bin/env bash
# Soak: holds many WebSocket connections against a `wsloop serve` process for a while, with keepalive
# pings and a trickle of echoed messages, and reports the server's RSS and CPU (examples/soak.rs has
# the method). Fails when a connection or a message is lost.
#
# Usage:
#   scripts/soak.sh [SECONDS] [SOAK_FLAGS...] [-- SERVER_FLAGS...]
#
#   SECONDS     how long the connections are held after the ramp (default 600)
#   SOAK_FLAGS  --connections N (19000), --message-every SECS (10), --ping-interval SECS (5),
#               --idle SECS (30: messages stop, the idle server's CPU is measured)
#
# The server and the load are separate processes (each may hold up to `ulimit -n` descriptors; 19,000
# connections need 19,000 in each).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=600
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi
cargo build --release --examples --bin wsloop
exec target/release/examples/soak --duration "$seconds" "$@"
