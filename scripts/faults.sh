#!/usr/bin/env bash
# Faults against a running server while a witness connection keeps echoing (examples/faults.rs has the
# method): resets mid-frame, garbage after the handshake, peers that never read, handler panics under
# load, accept at the descriptor limit (prlimit --pid lowers the server's soft RLIMIT_NOFILE), and a
# handler streaming 1 GiB to a slow reader. Prints one Markdown table row per fault; exits 1 when the
# witness failed or the server's descriptors or pool buffers did not return to their starting counts.
#
# Usage:
#   scripts/faults.sh
#
# RUST_BACKTRACE is 0 for the server unless set: with backtraces on, each of the 200 deliberate handler
# panics is symbolized on its reactor thread (tens of MiB of debug info resident, ~100 ms stalls), which
# measures the panic hook, not the engine.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v prlimit >/dev/null || { echo "faults.sh: prlimit (util-linux) is needed" >&2; exit 2; }
cargo build --release --examples
RUST_BACKTRACE=${RUST_BACKTRACE_SERVER:-0} exec target/release/examples/faults
