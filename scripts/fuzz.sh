#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target for a time budget each, from the committed seed corpus.
#
# Usage:
#   scripts/fuzz.sh SECONDS [TARGET...]
#
#   SECONDS   the budget per target (libFuzzer's -max_total_time)
#   TARGET    fuzz targets to run (default: every fuzz/fuzz_targets/*.rs)
#
# Each target runs `cargo +nightly fuzz run TARGET fuzz/corpus/TARGET fuzz/seeds/TARGET --
# -max_total_time=SECONDS`: libFuzzer reads the committed seeds (never written to) and the working corpus
# fuzz/corpus/TARGET (kept between runs, not committed), and writes what it finds to the latter. A crash,
# a leak, an input that runs over 10 s (-timeout) or an out-of-memory (-rss_limit_mb=2048) stops that
# target, leaves the input in fuzz/artifacts/TARGET/ and makes this script exit 1 after the others ran.
# The last line per target is libFuzzer's final stats (executions, corpus). Needs the nightly toolchain
# (rustup) and cargo-fuzz (`cargo install cargo-fuzz` if missing: done here, from crates.io).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
seconds=$1
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in fuzz/fuzz_targets/*.rs; do
        targets+=("$(basename "$f" .rs)")
    done
fi

cargo=(cargo +nightly)
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz.sh: no nightly toolchain: the default one with RUSTC_BOOTSTRAP=1" >&2
    cargo=(env RUSTC_BOOTSTRAP=1 cargo)
fi
if ! "${cargo[@]}" fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

"${cargo[@]}" fuzz build
failed=()
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target" target/fuzz-logs
    # Not in fuzz/artifacts/: cargo-fuzz takes any new file there for the crashing input.
    log="target/fuzz-logs/$target.log"
    started=$(date +%s)
    echo "== $target: ${seconds}s from fuzz/seeds/$target ($(ls "fuzz/seeds/$target" | wc -l) seeds)"
    if "${cargo[@]}" fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- -timeout=10 \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$target")
        grep -E 'ERROR|panicked|SUMMARY|Test unit written' "$log" | head -20 || true
    fi
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
    corpus=$(ls "fuzz/corpus/$target" | wc -l)
    echo "== $target: $status after $(( $(date +%s) - started ))s, ${runs:-?} inputs run, corpus $corpus files, log $log"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${seconds}s each, 0 crashes"
