#!/usr/bin/env bash
# wsloop side by side with other WebSocket echo servers (benches/peers/), every server single-threaded.
#
#   scripts/bench-peers.sh [--quick] [--rounds N] [--duration SECS] [--scenarios LIST] [--servers LIST]
#                          [--idle-conns N] [--idle-window W] [--crosscheck] [--server-quota PCT]
#                          [--no-build] [--docs | --no-docs]
#
# Builds wsloop (cargo build --release) and the peers (benches/peers: tokio-tungstenite, fastwebsockets,
# ws-rs, node ws, Bun, Go gorilla/websocket), then for each scenario runs every server in turn, round after round
# (A B C A B C ...), each on a fresh process and a free port, checked to be up and echoing before it is
# measured. Server pinned to core 0, client to core 1 (except scenario v).
#
#   i    100 connections x 16 B binary, 16 in flight each      wsloop bench -c 100 -s 16 -p 16 --binary
#   ii   1,000 connections x 512 B text, 1 in flight           wsloop bench -c 1000 -s 512 -p 1 --text
#   iii  10 connections x 64 KiB binary, 1 in flight           wsloop bench -c 10 -s 65536 -p 1 --binary
#   iv   10,000 idle connections: server RSS growth per connection, handshakes/s (benches/peers idle-probe)
#   v    scenario i without pinning
#
# Throughput runs use `target/release/wsloop bench URL ... -d SECS -t 1 --json`; the server's CPU time
# (utime + stime from /proc/PID/stat) over the run is measured here. Results: bench-results/peers-DATE.json
# (raw outputs and server logs in bench-results/peers-DATE/), then benches/peers' `peers-report` rewrites the
# section of docs/benchmarks.md between <!-- peers:begin --> and <!-- peers:end --> and docs/img/peers.svg.
#
#   --quick          smoke test: 1 round, 2 s runs, scenarios i and iv, 1,000 idle connections; the report
#                    goes to bench-results/peers-DATE.md/.svg instead of docs/ (unless --docs)
#   --rounds N       rounds (default 3)             --duration SECS   per throughput run (default 10)
#   --scenarios L    e.g. i,iv (default i,ii,iii,iv,v)
#   --servers L      e.g. wsloop,gorilla (default wsloop,tungstenite,fastws,ws-rs,node-ws,bun,gorilla); also
#                    bun-deflate and node-ws-deflate (the same servers offering permessage-deflate: only a
#                    client that asks for it gets it, and `wsloop bench` does not ask), and wsloop-base
#                    (WSLOOP_BASE=PATH: another wsloop build, e.g. the start of a change, measured as a
#                    server beside this one; the load generator is always $WSLOOP), and wsloop-uring
#                    (EXPERIMENTAL: examples/uring_echo, the io_uring echo loop over the same sans-IO
#                    core; built with --features io-uring; URING_ECHO=PATH overrides), and
#                    wsloop-io-uring (EXPERIMENTAL: $WSLOOP serve --io-uring, the reactor reading through
#                    io_uring; $WSLOOP must be built with --features io-uring, else it runs on mio and
#                    says so in a warning)
#   --idle-conns N   scenario iv connections (default 10000; needs N + ~20 open files per process)
#   --idle-window W  handshakes in flight at once in scenario iv (idle-probe threads, default 8)
#   --crosscheck     measure every throughput run a second time with benches/peers' independent `loadgen`
#                    (no wsloop code in it), right after the `wsloop bench` run: rows "NAME [loadgen]", and
#                    a table of wsloop bench ÷ loadgen per server, to show the bench measures what an
#                    independent load generator measures
#   --server-quota PCT  also measure every pinned scenario (i, ii, iii, iv) with each server held to PCT % of
#                    core 0 (../shared/bench/cpu-quota PCT: a CPU cgroup, 10 ms period; needs root and a
#                    writable cpu controller) while the load generator runs free on core 1, so that msgs/s
#                    measures the server and not the load generator. The quota runs are scenarios of their
#                    own (ids i-qPCT, ii-qPCT, ...; tables and chart bars of their own) and are interleaved
#                    with the unlimited ones: each round runs every server unlimited, then every server at
#                    the quota. CPU_QUOTA=PATH overrides the script's location.
#   --no-build       use what is built; servers that are not built are skipped
#   --docs/--no-docs rewrite docs/benchmarks.md and docs/img/peers.svg (default: yes, except with --quick)
#
# Needs: python3, taskset, cargo; node/npm (node ws, and Bun from npm) and go (Debian golang-go + golang-github-gorilla-websocket-dev)
# for those peers, which are skipped with a warning when missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PEERS=$ROOT/benches/peers
PROBE=$PEERS/wsprobe.py
WSLOOP=${WSLOOP:-$ROOT/target/release/wsloop}   # override to measure another build
REPORT=$PEERS/target/release/peers-report
IDLE_PROBE=$PEERS/target/release/idle-probe
LOADGEN=$PEERS/target/release/loadgen
URING_ECHO=${URING_ECHO:-$ROOT/target/release/examples/uring_echo}   # the io_uring prototype (wsloop-uring)

ROUNDS=3 DURATION=10 SCENARIOS=i,ii,iii,iv,v IDLE_CONNS=10000 IDLE_WINDOW=8 BUILD=1 DOCS='' QUICK=0 CROSSCHECK=0
QUOTA='' CPU_QUOTA=${CPU_QUOTA:-$ROOT/../shared/bench/cpu-quota}
SERVERS=wsloop,tungstenite,fastws,ws-rs,node-ws,bun,gorilla
BUN=$PEERS/bun/node_modules/@oven/bun-linux-x64/bin/bun   # npm @oven/bun-linux-x64, pinned in bun/package.json
ROUNDS_SET='' DURATION_SET='' SCENARIOS_SET='' IDLE_SET=''

die() { echo "bench-peers: $*" >&2; exit 2; }
log() { echo "bench-peers: $*" >&2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

export BENCH_PEERS_ARGS="$*"   # for the results file
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS=${2:?}; ROUNDS_SET=1; shift ;;
        --duration) DURATION=${2:?}; DURATION_SET=1; shift ;;
        --scenarios) SCENARIOS=${2:?}; SCENARIOS_SET=1; shift ;;
        --servers) SERVERS=${2:?}; shift ;;
        --idle-conns) IDLE_CONNS=${2:?}; IDLE_SET=1; shift ;;
        --idle-window) IDLE_WINDOW=${2:?}; shift ;;
        --crosscheck) CROSSCHECK=1 ;;
        --server-quota) QUOTA=${2:?}; shift ;;
        --no-build) BUILD=0 ;;
        --docs) DOCS=1 ;;
        --no-docs) DOCS=0 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then
    [ -n "$ROUNDS_SET" ] || ROUNDS=1
    [ -n "$DURATION_SET" ] || DURATION=2
    [ -n "$SCENARIOS_SET" ] || SCENARIOS=i,iv
    [ -n "$IDLE_SET" ] || IDLE_CONNS=1000
    [ -n "$DOCS" ] || DOCS=0
fi
[ -n "$DOCS" ] || DOCS=1
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds wants a positive integer"
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "--duration wants whole seconds"
[[ "$IDLE_CONNS" =~ ^[1-9][0-9]*$ ]] || die "--idle-conns wants a positive integer"
IFS=, read -r -a SCENARIO_LIST <<<"$SCENARIOS"
IFS=, read -r -a SERVER_LIST <<<"$SERVERS"
for s in "${SCENARIO_LIST[@]}"; do
    case $s in i|ii|iii|iv|v) ;; *) die "unknown scenario '$s'" ;; esac
done
if [ -n "$QUOTA" ]; then
    [[ "$QUOTA" =~ ^[1-9][0-9]?$|^100$ ]] || die "--server-quota wants a percentage of one core, 1-100"
    [ -x "$CPU_QUOTA" ] || die "--server-quota needs $CPU_QUOTA (or CPU_QUOTA=PATH)"
    "$CPU_QUOTA" "$QUOTA" true || die "--server-quota: $CPU_QUOTA $QUOTA cannot run a command here"
fi
command -v python3 >/dev/null || die "python3 is needed"
command -v taskset >/dev/null || die "taskset is needed (util-linux)"
[ "$(nproc)" -ge 2 ] || log "warning: fewer than 2 cores: pinning server and client to cores 0 and 1 will fail"

# Each server needs one file per connection, and so does the idle-connection probe.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 64)) ]; then
    log "warning: open-file limit $(ulimit -n) is below --idle-conns $IDLE_CONNS + 64; scenario iv may fail"
fi

STAMP=$(date -u +%Y%m%d-%H%M%S)
OUTDIR=$ROOT/bench-results
mkdir -p "$OUTDIR"
[ -f "$OUTDIR/.gitignore" ] || printf '*\n' >"$OUTDIR/.gitignore"   # results are never committed
RESULTS=$OUTDIR/peers-$STAMP.json
RAW=$OUTDIR/peers-$STAMP
mkdir -p "$RAW"
RUNS=$RAW/runs.jsonl
: >"$RUNS"

# ------------------------------------------------------------------------------------------------ build

if [ "$BUILD" = 1 ]; then
    log "building wsloop (cargo build --release)"
    (cd "$ROOT" && nice -n 10 cargo build --release --quiet) || die "wsloop does not build"
    if [[ ",$SERVERS," == *,wsloop-uring,* ]]; then
        (cd "$ROOT" && nice -n 10 cargo build --release --quiet --features io-uring --example uring_echo) ||
            log "warning: examples/uring_echo does not build; wsloop-uring is skipped"
    fi
    (cd "$ROOT" && nice -n 10 cargo build --release --quiet --example idle_memory) ||
        log "warning: examples/idle_memory does not build; no cross-check for scenario iv"
    log "building the Rust peers and the report generator (benches/peers)"
    (cd "$PEERS" && nice -n 10 cargo build --release --quiet --workspace) ||
        log "warning: benches/peers does not build; its servers are skipped"
    if command -v npm >/dev/null; then
        if [ ! -d "$PEERS/node/node_modules/ws" ]; then
            log "installing node ws (npm install; the version is pinned in package.json)"
            (cd "$PEERS/node" && nice -n 10 npm install --no-package-lock --no-audit --no-fund --loglevel=error) ||
                log "warning: npm install failed; node-ws is skipped"
        fi
        if [ ! -x "$BUN" ]; then
            log "installing Bun (npm install of @oven/bun-linux-x64; the version is pinned in package.json)"
            (cd "$PEERS/bun" && nice -n 10 npm install --no-package-lock --no-audit --no-fund --loglevel=error) ||
                log "warning: npm install failed; bun is skipped"
        fi
    else
        log "warning: npm not found; node-ws and bun are skipped"
    fi
    if command -v go >/dev/null && [ -d /usr/share/gocode/src/github.com/gorilla/websocket ]; then
        log "building the Go gorilla/websocket peer (GOPATH mode)"
        (cd "$PEERS/go" && GO111MODULE=off GOPATH=/usr/share/gocode nice -n 10 go build -o go-echo echo.go) ||
            log "warning: go build failed; gorilla is skipped"
    else
        log "warning: go or gorilla/websocket missing (apt-get install golang-go golang-github-gorilla-websocket-dev); gorilla is skipped"
    fi
fi

# --------------------------------------------------------------------------------------------- servers

# server_argv NAME PORT: sets ARGV to the command line of server NAME on PORT.
server_argv() {
    case $1 in
        wsloop) ARGV=("$WSLOOP" serve --addr "127.0.0.1:$2" --threads 1) ;;
        wsloop-base) ARGV=("${WSLOOP_BASE:-}" serve --addr "127.0.0.1:$2" --threads 1) ;;
        wsloop-uring) ARGV=("$URING_ECHO" serve --addr "127.0.0.1:$2" --threads 1) ;;
        wsloop-io-uring) ARGV=("$WSLOOP" serve --addr "127.0.0.1:$2" --threads 1 --io-uring) ;;
        tungstenite) ARGV=("$PEERS/target/release/tungstenite-echo" "$2") ;;
        fastws) ARGV=("$PEERS/target/release/fastws-echo" "$2") ;;
        ws-rs) ARGV=("$PEERS/target/release/wsrs-echo" "$2") ;;
        node-ws) ARGV=(node "$PEERS/node/echo.js" "$2") ;;
        node-ws-deflate) ARGV=(node "$PEERS/node/echo.js" "$2" --deflate) ;;
        bun) ARGV=("$BUN" "$PEERS/bun/echo.js" "$2") ;;
        bun-deflate) ARGV=("$BUN" "$PEERS/bun/echo.js" "$2" --deflate) ;;
        gorilla) ARGV=(env GOMAXPROCS=1 "$PEERS/go/go-echo" "$2") ;;
        *) return 1 ;;
    esac
}

# built NAME: true if server NAME can run here.
built() {
    case $1 in
        wsloop) [ -x "$WSLOOP" ] ;;
        wsloop-base) [ -n "${WSLOOP_BASE:-}" ] && [ -x "$WSLOOP_BASE" ] ;;
        wsloop-uring) [ -x "$URING_ECHO" ] ;;
        wsloop-io-uring) [ -x "$WSLOOP" ] ;;
        tungstenite) [ -x "$PEERS/target/release/tungstenite-echo" ] ;;
        fastws) [ -x "$PEERS/target/release/fastws-echo" ] ;;
        ws-rs) [ -x "$PEERS/target/release/wsrs-echo" ] ;;
        node-ws|node-ws-deflate) command -v node >/dev/null && [ -d "$PEERS/node/node_modules/ws" ] ;;
        bun|bun-deflate) [ -x "$BUN" ] ;;
        gorilla) [ -x "$PEERS/go/go-echo" ] ;;
        *) return 1 ;;
    esac
}

ACTIVE=()
for s in "${SERVER_LIST[@]}"; do
    if ! server_argv "$s" 0; then die "unknown server '$s'"; fi
    if built "$s"; then ACTIVE+=("$s"); else log "warning: $s is not built: skipped"; fi
done
[ ${#ACTIVE[@]} -gt 0 ] || die "no server to measure"
built wsloop || log "warning: wsloop is not built: no ratios"

HAVE_BENCH=0
if [ -x "$WSLOOP" ] && "$WSLOOP" bench --help >/dev/null 2>&1; then HAVE_BENCH=1; fi
[ "$HAVE_BENCH" = 1 ] || log "warning: 'wsloop bench' is not available: throughput runs only check that servers start and echo"
if [ "$CROSSCHECK" = 1 ] && [ ! -x "$LOADGEN" ]; then
    log "warning: $LOADGEN is not built: no cross-check"
    CROSSCHECK=0
fi

SERVER_PID=
cleanup() {
    local rc=$?
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        sleep 0.5
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server NAME PORT PIN LOG [QUOTA]: starts it (pinned to core 0 if PIN=1; held to QUOTA % of a core if
# given), waits until it echoes; sets SERVER_PID.
start_server() {
    local name=$1 port=$2 pin=$3 logf=$4 quota=${5:-}
    server_argv "$name" "$port"
    if [ "$pin" = 1 ]; then ARGV=(taskset -c 0 "${ARGV[@]}"); fi
    if [ -n "$quota" ]; then ARGV=("$CPU_QUOTA" "$quota" "${ARGV[@]}"); fi
    # cpu-quota, taskset and env exec the server: $! is the server's own PID.
    "${ARGV[@]}" >"$logf" 2>&1 </dev/null &
    SERVER_PID=$!
    for _ in $(seq 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || { SERVER_PID=; return 1; }
        if python3 "$PROBE" check "ws://127.0.0.1:$port/" --timeout 2 2>>"$logf"; then return 0; fi
        sleep 0.1
    done
    stop_server
    return 1
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }

# record KEY=VALUE... [--json-file KEY=FILE]...: appends one run record (JSON object) to $RUNS.
record() {
    python3 - "$RUNS" "$@" <<'PY'
import json, sys
out, rec = sys.argv[1], {}
for arg in sys.argv[2:]:
    key, _, value = arg.partition("=")
    if key.startswith("@"):           # @key=FILE: the JSON in FILE (whole, or its last JSON line)
        key, text = key[1:], open(value).read().strip()
        try:
            rec[key] = json.loads(text)
        except ValueError:
            rec[key] = None
            for line in reversed(text.splitlines()):
                try:
                    rec[key] = json.loads(line)
                    break
                except ValueError:
                    pass
        continue
    for conv in (int, float):
        try:
            value = conv(value)
            break
        except ValueError:
            pass
    if value in ("true", "false"):
        value = value == "true"
    rec[key] = value
# Throughput: lift the figures the report uses out of the bench output, add server efficiency.
b = rec.pop("bench", None)
if isinstance(b, dict):
    rec["bench"] = b
    # `wsloop bench --json`: measured.{messages_per_second, received, seconds}, latency_us.{p50, p90, p99,
    # p99_9, max}, bench_cpu.percent_of_one_core.
    # benches/peers `loadgen`: messages_per_second, measured_messages, latency_us, cpu at the top level.
    if "measured" in b:
        measured = b.get("measured") or {}
        load_cpu = b.get("bench_cpu") or {}
    else:
        measured = {"messages_per_second": b.get("messages_per_second"), "received": b.get("measured_messages")}
        load_cpu = b.get("cpu") or {}
    rate = measured.get("messages_per_second")
    rec["messages_per_second"] = rate
    lat = b.get("latency_us") or {}
    rec["latency_us"] = {"p50": lat.get("p50"), "p90": lat.get("p90"), "p99": lat.get("p99"),
                         "p999": lat.get("p99_9"), "max": lat.get("max")}
    rec["bench_cpu_percent"] = load_cpu.get("percent_of_one_core")
    messages = measured.get("received")
    if not isinstance(messages, (int, float)) and isinstance(rate, (int, float)):
        secs = measured.get("seconds") or rec.get("wall_seconds")
        messages = rate * secs if secs else None
    cpu = rec.get("server_cpu_seconds")
    rec["messages_per_server_cpu_second"] = messages / cpu if messages and cpu else None
    if not isinstance(rate, (int, float)):
        rec["ok"], rec["error"] = False, "no messages_per_second in the bench output"
elif rec.get("kind") == "throughput" and rec.get("ok"):
    rec["ok"], rec["error"] = False, "bench output is not JSON"
# Idle: the probe's object.
p = rec.pop("probe", None)
if isinstance(p, dict):
    rec.update(p)
    rec["ok"] = bool(rec.get("ok", True)) and p.get("failed") == 0 and p.get("dropped") == 0
    if not rec["ok"] and "error" not in rec:
        rec["error"] = f"{p.get('failed')} failed, {p.get('dropped')} dropped: {p.get('failures')}"
elif rec.get("kind") == "idle" and rec.get("ok"):
    rec["ok"], rec["error"] = False, "probe output is not JSON"
with open(out, "a") as f:
    f.write(json.dumps(rec) + "\n")
PY
}

# A quota scenario's id is its base scenario's with -qPCT: base_of i-q50 = i, quota_of i-q50 = 50.
base_of() { echo "${1%%-q*}"; }
quota_of() { case $1 in *-q*) echo "${1##*-q}" ;; *) echo '' ;; esac; }

scenario_args() {   # bench flags of a throughput scenario
    case $(base_of "$1") in
        i|v) echo "-c 100 -s 16 -p 16 --binary" ;;
        ii) echo "-c 1000 -s 512 -p 1 --text" ;;
        iii) echo "-c 10 -s 65536 -p 1 --binary" ;;
    esac
}

run_throughput() {   # SCENARIO SERVER ROUND [TOOL: bench (default) or loadgen]
    local sc=$1 name=$2 round=$3 tool=${4:-bench} pin=1 port base ok=true err='' t0 t1 w0 w1 rc row=$2 quota
    quota=$(quota_of "$sc")
    [ "$sc" = v ] && pin=0
    [ "$tool" = loadgen ] && row="$name [loadgen]"
    base=$RAW/$sc-$name-r$round
    [ "$tool" = loadgen ] && base=$base-loadgen
    port=$(free_port)
    # shellcheck disable=SC2207
    local args=($(scenario_args "$sc"))
    if ! start_server "$name" "$port" "$pin" "$base.server.log" "$quota"; then
        log "  $sc $name round $round: server did not start or echo (see $base.server.log)"
        record kind=throughput scenario="$sc" server="$row" round="$round" ok=false error="server did not start or echo"
        return
    fi
    if [ "$HAVE_BENCH" != 1 ]; then
        log "  $sc $name round $round: server up and echoing on $port; 'wsloop bench' not available, not measured"
        stop_server
        record kind=throughput scenario="$sc" server="$name" round="$round" ok=false error="wsloop bench not available"
        return
    fi
    local client=("$WSLOOP" bench "ws://127.0.0.1:$port/" "${args[@]}" -d "${DURATION}s" -t 1 --json)
    # loadgen takes the same -c -s -p --text flags (and ignores --binary, its default).
    [ "$tool" = loadgen ] && client=("$LOADGEN" "ws://127.0.0.1:$port/" "${args[@]/--binary/}" -d "$DURATION")
    [ "$pin" = 1 ] && client=(taskset -c 1 "${client[@]}")
    local load
    load=$(loadavg)
    t0=$(cpu_ticks "$SERVER_PID") w0=$(date +%s.%N)
    rc=0
    timeout $((DURATION + 60)) "${client[@]}" >"$base.bench.json" 2>"$base.bench.err" || rc=$?
    w1=$(date +%s.%N)
    if kill -0 "$SERVER_PID" 2>/dev/null; then t1=$(cpu_ticks "$SERVER_PID"); else t1=$t0; ok=false err="server died"; fi
    stop_server
    if [ "$rc" != 0 ]; then ok=false err="$tool exited $rc: $(tail -c 300 "$base.bench.err" | tr '\n' ' ')"; fi
    local cpu wall
    cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", (b - a) / hz }')
    wall=$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.3f", b - a }')
    local extra=()
    [ -n "$err" ] && extra=(error="$err")
    record kind=throughput scenario="$sc" server="$row" round="$round" ok="$ok" "${extra[@]}" pinned="$pin" \
        load_generator="$tool" server_quota_percent="${quota:-100}" server_cpu_seconds="$cpu" wall_seconds="$wall" loadavg="$load" @bench="$base.bench.json"
    log "  $sc $row round $round: $(tail -n 1 "$RUNS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(("%.0f msgs/s, server CPU %.2f s" % (r["messages_per_second"], r["server_cpu_seconds"])) if r["ok"] else "FAILED: " + r["error"])')"
}

run_idle() {   # SERVER ROUND [SCENARIO: iv (default) or iv-qPCT]
    local name=$1 round=$2 sc=${3:-iv} port base rc=0 load quota
    quota=$(quota_of "$sc")
    base=$RAW/$sc-$name-r$round
    port=$(free_port)
    if ! start_server "$name" "$port" 1 "$base.server.log" "$quota"; then
        log "  $sc $name round $round: server did not start or echo (see $base.server.log)"
        record kind=idle scenario="$sc" server="$name" round="$round" ok=false error="server did not start or echo"
        return
    fi
    load=$(loadavg)
    if [ -x "$IDLE_PROBE" ]; then
        taskset -c 1 "$IDLE_PROBE" "127.0.0.1:$port" --pid "$SERVER_PID" -n "$IDLE_CONNS" \
            --threads "$IDLE_WINDOW" >"$base.probe.json" 2>"$base.probe.err" || rc=$?
    else
        taskset -c 1 python3 "$PROBE" idle "ws://127.0.0.1:$port/" --pid "$SERVER_PID" -n "$IDLE_CONNS" \
            --window "$IDLE_WINDOW" >"$base.probe.json" 2>"$base.probe.err" || rc=$?
    fi
    stop_server
    local extra=()
    [ "$rc" != 0 ] && extra=(ok=false error="probe exited $rc: $(tail -c 300 "$base.probe.err" | tr '\n' ' ')")
    record kind=idle scenario="$sc" server="$name" round="$round" ok=true server_quota_percent="${quota:-100}" loadavg="$load" "${extra[@]}" @probe="$base.probe.json"
    log "  $sc $name round $round: $(tail -n 1 "$RUNS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(("%s B/conn, %s handshakes/s" % (r["bytes_per_connection"], r["handshakes_per_second"])) if r["ok"] else "FAILED: " + r["error"])')"
}

# Cross-check for wsloop: its own example measures the same thing with sequential blocking handshakes.
run_idle_memory_example() {   # ROUND
    local ex=$ROOT/target/release/examples/idle_memory out
    [ -x "$ex" ] && [ -x "$WSLOOP" ] || return 0
    out=$(cd "$ROOT" && timeout 300 "$ex" "$IDLE_CONNS" "$WSLOOP" 2>"$RAW/iv-idle_memory-r$1.err") || {
        log "  iv wsloop idle_memory round $1: failed"; return 0; }
    echo "$out" >"$RAW/iv-idle_memory-r$1.txt"
    python3 - "$out" >"$RAW/iv-idle_memory-r$1.json" <<'PY'
import json, sys
kv = dict(w.split("=", 1) for w in sys.argv[1].split() if "=" in w)
print(json.dumps({"connections": int(kv["connections"]), "failed": 0, "dropped": 0, "window": 1,
                  "rss_before_kib": int(kv["rss_before_kib"]), "rss_after_kib": int(kv["rss_after_kib"]),
                  "bytes_per_connection": float(kv["bytes_per_connection"]),
                  "handshakes_per_second": float(kv["handshakes_per_second"])}))
PY
    record kind=idle scenario=iv server="wsloop (examples/idle_memory)" round="$1" ok=true pinned=0 \
        @probe="$RAW/iv-idle_memory-r$1.json"
    log "  iv wsloop (examples/idle_memory) round $1: $out"
}

# ---------------------------------------------------------------------------------------------- run

log "servers: ${ACTIVE[*]}; scenarios: ${SCENARIO_LIST[*]}; $ROUNDS round(s), ${DURATION} s runs; raw output in $RAW"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# Every scenario's runs, plus (--server-quota) its quota twin's, interleaved round by round.
ALL_SCENARIOS=()
for base in "${SCENARIO_LIST[@]}"; do
    variants=("$base")
    [ -n "$QUOTA" ] && [ "$base" != v ] && variants+=("$base-q$QUOTA")
    ALL_SCENARIOS+=("${variants[@]}")
    log "scenario ${variants[*]}"
    for round in $(seq "$ROUNDS"); do
        for sc in "${variants[@]}"; do
            for name in "${ACTIVE[@]}"; do
                if [ "$base" = iv ]; then
                    run_idle "$name" "$round" "$sc"
                else
                    run_throughput "$sc" "$name" "$round"
                    if [ "$CROSSCHECK" = 1 ] && [ "$sc" != v ]; then sleep 0.5; run_throughput "$sc" "$name" "$round" loadgen; fi
                fi
                sleep 0.5
            done
        done
        if [ "$base" = iv ] && [[ " ${ACTIVE[*]} " == *" wsloop "* ]]; then run_idle_memory_example "$round"; fi
    done
done

# ------------------------------------------------------------------------------------------ results

versions() {
    local v
    printf 'wsloop\t%s\n' "$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')"
    [ -f "$PEERS/Cargo.lock" ] && awk '
        /^name = / { gsub(/"/, "", $3); name = $3 }
        /^version = / && name ~ /^(tokio-tungstenite|fastwebsockets|ws|tokio|hyper)$/ { gsub(/"/, "", $3); print name "\t" $3 }
    ' "$PEERS/Cargo.lock"
    command -v node >/dev/null && printf 'node\t%s\n' "$(node --version)"
    v=$(node -p 'require(process.argv[1] + "/package.json").version' "$PEERS/node/node_modules/ws" 2>/dev/null) &&
        printf 'node ws\t%s\n' "$v"
    [ -x "$BUN" ] && printf 'bun\t%s\n' "$("$BUN" --version)"
    command -v go >/dev/null && printf 'go\t%s\n' "$(go version | awk '{ print $3 }')"
    v=$(dpkg-query -W -f '${Version}' golang-github-gorilla-websocket-dev 2>/dev/null) && printf 'gorilla/websocket\t%s\n' "$v"
    printf 'rustc\t%s\n' "$(rustc --version | awk '{ print $2 }')"
}
versions >"$RAW/versions.tsv" || true

python3 - "$RESULTS" "$RUNS" "$RAW/versions.tsv" <<PY
import json, os, platform, sys
out, runs_path, versions_path = sys.argv[1:4]
runs = [json.loads(l) for l in open(runs_path) if l.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
versions = {}
for line in open(versions_path):
    k, _, v = line.rstrip("\n").partition("\t")
    if k:
        versions[k] = v
titles = {
    "i": ("throughput", "100 connections × 16-byte binary, 16 in flight each", "16 B ×16", True),
    "ii": ("throughput", "1,000 connections × 512-byte text, 1 in flight", "512 B text", True),
    "iii": ("throughput", "10 connections × 64 KiB binary, 1 in flight", "64 KiB", True),
    "iv": ("idle", f"{$IDLE_CONNS:,} idle connections: server RSS growth and handshake rate", "idle", True),
    "v": ("throughput", "scenario (i) without CPU pinning", "(i) unpinned", False),
}
args = {"i": "-c 100 -s 16 -p 16 --binary", "ii": "-c 1000 -s 512 -p 1 --text",
        "iii": "-c 10 -s 65536 -p 1 --binary", "v": "-c 100 -s 16 -p 16 --binary"}
scenarios = []
for sc in "${ALL_SCENARIOS[*]}".split():
    base, _, quota = sc.partition("-q")
    kind, title, short, pinned = titles[base]
    if quota:
        title += f"; every server held to {quota} % of one core"
        short += f" @{quota}%"
    s = {"id": sc, "kind": kind, "title": title, "short": short, "pinned": pinned,
         "server_quota_percent": int(quota) if quota else None,
         "runs": [r for r in runs if r.get("scenario") == sc]}
    if kind == "throughput":
        s["bench_args"] = f"URL {args[base]} -d ${DURATION}s -t 1 --json"
    else:
        s["connections"] = $IDLE_CONNS
        s["method"] = ("Server on core 0; \`idle-probe\` (benches/peers) on core 1 opens the connections "
                       "($IDLE_WINDOW threads of blocking handshakes, handshake only, then idle), after one warm-up connection; "
                       "RSS is VmRSS of /proc/PID/status before and 1 s after. Handshakes per server CPU-s: "
                       "connections ÷ the server's utime + stime over the handshakes. The "
                       "\`wsloop (examples/idle_memory)\` row is wsloop's own example (sequential blocking "
                       "handshakes, unpinned), as a cross-check of the probe.")
        if quota:
            s["method"] += (f" Here every server is held to {quota} % of core 0 (a CPU cgroup with a 10 ms period, "
                            "\`../shared/bench/cpu-quota\`), so handshakes/s measures the server.")
    scenarios.append(s)
doc = {
    "schema": "wsloop-bench-peers/1",
    "date_utc": "$(date -u '+%Y-%m-%d %H:%M')",
    "mode": "quick" if $QUICK else "full",
    "rounds": $ROUNDS,
    "duration_s": $DURATION,
    "command": ("scripts/bench-peers.sh " + os.environ.get("BENCH_PEERS_ARGS", "")).strip(),
    "machine": {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "loadavg_start": "$LOAD_START"},
    "versions": versions,
    "servers": "${ACTIVE[*]}".split(),
    "wsloop_bench_available": bool($HAVE_BENCH),
    "crosscheck": bool($CROSSCHECK),
    "scenarios": scenarios,
}
json.dump(doc, open(out, "w"), indent=1)
PY
log "results: $RESULTS"

if [ ! -x "$REPORT" ]; then
    log "warning: $REPORT is not built: no report"
    exit 0
fi
if [ "$DOCS" = 1 ]; then
    MD=$ROOT/docs/benchmarks.md SVG=$ROOT/docs/img/peers.svg
else
    MD=$OUTDIR/peers-$STAMP.md SVG=$OUTDIR/peers-$STAMP.svg
fi
"$REPORT" "$RESULTS" --markdown "$MD" --svg "$SVG"
log "report: $MD, chart: $SVG"
