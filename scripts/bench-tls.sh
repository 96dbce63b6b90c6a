#!/usr/bin/env bash
# TLS against plain, in one run: echo msg/s of `wsloop serve` over wss:// as a ratio of ws:// in the three
# scenarios of docs/benchmarks.md, (i) 100 conns x 16 B x 16 in flight, (ii) 1,000 x 512 B text x 1,
# (iii) 10 x 64 KiB x 1, and the same for Bun's server (benches/peers/bun, when its npm package is
# installed), plus connection-open rates (1,000 at once) with full TLS handshakes. Resumed against full
# handshakes, one at a time: examples/idle_memory.rs --tls / --tls-full.
#
#   cargo build --release && bash scripts/bench-tls.sh [SECONDS]
#
# Every server runs one thread (Bun has one event loop); the load is `wsloop bench -t 1`. Certificates:
# an EC P-256 CA and a leaf for localhost, made with openssl under target/bench-tls/. Prints one line per
# measurement and a Markdown table at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs=${1:-5}
bin=target/release/wsloop
bun=benches/peers/bun/node_modules/@oven/bun-linux-x64/bin/bun
dir=target/bench-tls
mkdir -p "$dir"

openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key" 2>/dev/null
openssl req -x509 -new -key "$dir/ca.key" -subj "/CN=bench CA" -days 30 -out "$dir/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$dir/key.ec" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$dir/key.ec" -out "$dir/key.pem"
openssl req -new -key "$dir/key.pem" -subj "/CN=localhost" -out "$dir/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' >"$dir/ext.cnf"
openssl x509 -req -in "$dir/leaf.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 30 \
    -extfile "$dir/ext.cnf" -out "$dir/cert.pem" 2>/dev/null

# The servers' pids, one a line (the start functions run in command substitutions: a file, not an array).
pidfile=$dir/pids
: >"$pidfile"
cleanup() { while read -r p; do kill "$p" 2>/dev/null || true; done <"$pidfile"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts `wsloop serve` (extra flags in $@); prints its port.
start_wsloop() {
    local log
    log=$(mktemp)
    "$bin" serve --addr 127.0.0.1:0 --threads 1 --ping-interval 0 --no-dashboard "$@" >"$log" 2>&1 &
    echo $! >>"$pidfile"
    for _ in $(seq 50); do
        if grep -q 'serving on' "$log"; then break; fi
        sleep 0.1
    done
    sed -n 's|^wsloop serving on wss\{0,1\}://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$log"
}

start_bun() {
    local port
    port=$(free_port)
    "$bun" benches/peers/bun/echo.js "$port" "$@" >/dev/null 2>&1 &
    echo $! >>"$pidfile"
    sleep 1
    echo "$port"
}

msgs() {
    "$bin" bench "$@" -t 1 --json -q | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["measured"]["messages_per_second"]))'
}

opens() {
    "$bin" bench "$@" -t 1 --json -q | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["connections"]["handshakes_per_second"]))'
}

declare -A result
servers=(wsloop)
ws_plain=$(start_wsloop)
ws_tls=$(start_wsloop --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem")
if [ -x "$bun" ]; then
    servers+=(bun)
    bun_plain=$(start_bun)
    bun_tls=$(start_bun --tls "$dir/cert.pem" "$dir/key.pem")
else
    echo "bench-tls: $bun not installed (npm install --no-package-lock in benches/peers/bun): Bun left out" >&2
fi

scenarios=("i:-c 100 -s 16 -p 16" "ii:-c 1000 -s 512 --text -p 1" "iii:-c 10 -s 65536 -p 1")
for server in "${servers[@]}"; do
    if [ "$server" = wsloop ]; then plain=$ws_plain tls=$ws_tls; else plain=$bun_plain tls=$bun_tls; fi
    for sc in "${scenarios[@]}"; do
        name=${sc%%:*}
        read -r -a flags <<<"${sc#*:}"
        p=$(msgs "ws://127.0.0.1:$plain/" "${flags[@]}" -d "${secs}s")
        t=$(msgs "wss://localhost:$tls/" --ca "$dir/ca.pem" "${flags[@]}" -d "${secs}s")
        result[$server,$name]="$p $t"
        echo "$server ($name) plain=$p tls=$t ratio=$(python3 -c "print(f'{$t/$p:.2f}')")"
    done
    # 1,000 connections opened at once, each sending one message: the open rate. Full handshakes only
    # (resumption off): opened together, most connections would start before any ticket arrived.
    full=$(opens "wss://localhost:$tls/" --ca "$dir/ca.pem" --no-tls-resume -c 1000 -n 1000)
    plain_opens=$(opens "ws://127.0.0.1:$plain/" -c 1000 -n 1000)
    result[$server,open]="$plain_opens $full"
    echo "$server opens/s: plain=$plain_opens tls_full=$full"
done

echo
echo "| server | scenario | ws:// msg/s | wss:// msg/s | wss/ws |"
echo "|---|---|---:|---:|---:|"
for server in "${servers[@]}"; do
    for sc in "${scenarios[@]}"; do
        name=${sc%%:*}
        read -r p t <<<"${result[$server,$name]}"
        echo "| $server | ($name) | $p | $t | $(python3 -c "print(f'{$t/$p:.2f}')") |"
    done
done
echo
echo "| server | ws:// opens/s | wss:// opens/s (full handshakes) |"
echo "|---|---:|---:|"
for server in "${servers[@]}"; do
    read -r a b <<<"${result[$server,open]}"
    echo "| $server | $a | $b |"
done
