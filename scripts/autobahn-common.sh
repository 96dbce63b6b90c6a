# shellcheck shell=bash
# Helpers shared by scripts/autobahn-server.sh and scripts/autobahn-client.sh (sourced, not run).
# Expects say() and die() to be defined by the caller.

# shellcheck disable=SC2016  # expanded by the inner bash
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null; }

free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local p
    for _ in $(seq 50); do
        p=$(( 20000 + RANDOM % 40000 ))
        port_open 127.0.0.1 "$p" || { echo "$p"; return; }
    done
    die "no free port found"
}

# "1.*, 2.1.1" -> ["1.*", "2.1.1"]
json_list() {
    local out="" item items=()
    IFS=',' read -r -a items <<<"$1" || true
    for item in "${items[@]}"; do
        item=${item//[[:space:]]/}
        [ -n "$item" ] || continue
        [[ "$item" =~ ^[0-9.*]+$ ]] || die "bad case pattern '$item' (use e.g. 1.*,9.1.1)"
        out="$out${out:+, }\"$item\""
    done
    printf '[%s]' "$out"
}

# Fallback summary from wstest's index.json: failing cases, then "N passed, M failed".
summarize_index() {
    command -v python3 >/dev/null 2>&1 || die "python3 is needed to summarize $1/index.json"
    python3 - "$1/index.json" "$2" <<'PY'
import json, sys
path, agent = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        cases = json.load(f).get(agent)
except (OSError, ValueError) as e:
    print("cannot read %s: %s" % (path, e), file=sys.stderr)
    sys.exit(2)
if not cases:
    print("no results for agent %s in %s" % (agent, path), file=sys.stderr)
    sys.exit(2)
ok_behavior = {"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"}
bad_close = {"FAILED", "WRONG CODE", "UNCLEAN"}
key = lambda c: [int(x) for x in c.split(".")]
failed = 0
for case in sorted(cases, key=key):
    r = cases[case]
    if r.get("behavior") not in ok_behavior or r.get("behaviorClose") in bad_close:
        failed += 1
        print("%-10s %-14s %-14s %s" % (case, r.get("behavior"), r.get("behaviorClose"), r.get("remoteCloseCode")))
print("%d passed, %d failed" % (len(cases) - failed, failed))
sys.exit(1 if failed else 0)
PY
}

# shellcheck disable=SC2034  # used by the sourcing script
CASES_JSON=$(json_list "$CASES")
# shellcheck disable=SC2034
EXCLUDE_JSON=$(json_list "$EXCLUDE")

