#!/usr/bin/env bash
# Checks that `rust-version` in Cargo.toml (the MSRV) is true, without installing an old toolchain:
#
#   1. dependencies: every package in the locked graph (`cargo metadata --locked`), for no default
#      features, the default features and all features, and with the dev-dependencies, on every
#      platform, must declare a `rust-version` (and an edition) that the MSRV satisfies;
#   2. the manifest: the edition of the package and of each target, and manifest keys newer than some
#      Rust (resolver 3, [lints], ...);
#   3. the language: the sources (src, tests, examples/*.rs, benches/*.rs; comments and string
#      contents stripped) are scanned for syntax stabilized late (a list of patterns, not a compiler:
#      semantic features such as trait upcasting are not seen);
#   4. the standard library: clippy's `incompatible_msrv` lint, run once against a low MSRV, reports the
#      newest std item the code uses. (The ordinary `cargo clippy -D warnings` step of .ci/run is what
#      fails on a std item newer than the MSRV; this run only measures the floor.)
#
# Prints what each part needs and who sets the floor; exits 1 if anything needs more than the MSRV.
# Usage: bash scripts/check-msrv.sh   (from anywhere; it works in the repository root)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo metadata --format-version 1 --locked --no-deps >"$work/self.json"
for set in no-default default all; do
    case $set in
        no-default) flags=(--no-default-features) ;;
        default) flags=() ;;
        all) flags=(--all-features) ;;
    esac
    cargo metadata --format-version 1 --locked "${flags[@]}" >"$work/deps-$set.json"
done

# Part 4: clippy's view of the std items used, against the edition's floor (lib, bins, examples and tests,
# all features). A private clippy.toml sets the low MSRV (and keeps test code in scope).
mkdir -p "$work/clippy"
edition_floor=$(python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))["packages"][0]["edition"]
print({"2015": "1.0.0", "2018": "1.31.0", "2021": "1.56.0", "2024": "1.85.0"}[e])' "$work/self.json")
printf 'msrv = "%s"\ncheck-incompatible-msrv-in-tests = true\n' "$edition_floor" >"$work/clippy/clippy.toml"
CLIPPY_CONF_DIR="$work/clippy" cargo clippy --quiet --all-features --lib --bins --examples --tests \
    --message-format json -- -A clippy::all -W clippy::incompatible_msrv \
    >"$work/clippy.json" 2>"$work/clippy.err" || {
    cat "$work/clippy.err" >&2
    echo "check-msrv: the clippy probe failed" >&2
    exit 1
}

python3 - "$work" <<'EOF'
import json, os, re, sys, tomllib

work = sys.argv[1]

def ver(s):
    parts = [int(x) for x in s.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

def show(v):
    return ".".join(str(x) for x in v[:2]) if v[2] == 0 else ".".join(map(str, v))

EDITION = {"2015": "1.0", "2018": "1.31", "2021": "1.56", "2024": "1.85"}

me = json.load(open(os.path.join(work, "self.json")))["packages"][0]
if not me.get("rust_version"):
    sys.exit("check-msrv: Cargo.toml declares no rust-version")
msrv = ver(me["rust_version"])
print(f"check-msrv: {me['name']} {me['version']} declares rust-version {me['rust_version']}")
failures = []
needs = []  # (version, what)

# 1. Dependencies.
def closure(meta, with_dev):
    pk = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = meta["resolve"]["root"]
    seen, stack = set(), [root]
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        for d in nodes[i]["deps"]:
            kinds = {k["kind"] for k in d["dep_kinds"]}
            if kinds & {None, "build"} or (with_dev and i == root and "dev" in kinds):
                stack.append(d["pkg"])
    seen.discard(root)
    return [pk[i] for i in seen]

def dep_floor(p):
    rv = ver(p["rust_version"]) if p.get("rust_version") else None
    ed = ver(EDITION[p["edition"]])
    return max(rv or ed, ed), rv is None

too_new = {}  # (package, version) -> (needs, the smallest feature set that pulls it in)
for label, name, with_dev in [
    ("no default features", "no-default", False),
    ("default features", "default", False),
    ("all features", "all", False),
    ("all features + dev-dependencies", "all", True),
]:
    meta = json.load(open(os.path.join(work, f"deps-{name}.json")))
    pkgs = closure(meta, with_dev)
    floors = sorted(((dep_floor(p)[0], p["name"], p["version"]) for p in pkgs), reverse=True)
    undeclared = sum(1 for p in pkgs if dep_floor(p)[1])
    top, tname, tversion = floors[0]
    print(f"  dependencies, {label}: {len(pkgs)} packages, floor {show(top)} set by {tname} {tversion}"
          f" ({undeclared} declare no rust-version: their edition counts)")
    for v, n, pv in floors:
        if v > msrv:
            too_new.setdefault((n, pv), (v, label))
    if not with_dev:
        needs.append((top, f"dependency {tname} {tversion} ({label})"))

for (n, pv), (v, label) in sorted(too_new.items(), key=lambda kv: kv[1][0], reverse=True):
    failures.append(f"dependency {n} {pv} needs Rust {show(v)} (pulled in with {label})")

# 2. The manifest.
manifest = tomllib.load(open("Cargo.toml", "rb"))
editions = {me["edition"]} | {t["edition"] for t in me["targets"]}
for e in sorted(editions):
    needs.append((ver(EDITION[e]), f"edition {e}"))
package = manifest.get("package", {})
keys = [
    (package.get("resolver") == "3" or manifest.get("workspace", {}).get("resolver") == "3",
     "1.84", "resolver = \"3\""),
    ("lints" in manifest, "1.74", "a [lints] table"),
    (any(isinstance(v, dict) and v.get("workspace") is True for v in package.values()),
     "1.64", "workspace-inherited package fields"),
    (any(f.startswith("dep:") for fs in manifest.get("features", {}).values() for f in fs),
     "1.60", "`dep:` features"),
]
for present, v, what in keys:
    if present:
        needs.append((ver(v), f"Cargo.toml: {what}"))

# 3. The language: late syntax in the sources.
def strip(src):
    """Blanks comments and the contents of string/char literals (keeping newlines and the quotes);
    returns the stripped text and the lines holding C-string literals."""
    out, cstr, i, n = [], [], 0, len(src)
    line = 1
    def blank(s):
        return "".join(c if c == "\n" else " " for c in s)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(src[i:j])); i = j; continue
        if src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j): depth += 1; j += 2
                elif src.startswith("*/", j): depth -= 1; j += 2
                else: j += 1
            out.append(blank(src[i:j])); line += src[i:j].count("\n"); i = j; continue
        m = re.match(r'(b|c)?r(#*)"', src[i:i + 260]) if c in "bcr" and (i == 0 or not (src[i-1].isalnum() or src[i-1] == "_")) else None
        if m:
            end = '"' + m.group(2)
            j = src.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            if m.group(1) == "c": cstr.append(src.count("\n", 0, i) + 1)
            out.append(src[i:i + m.end()] + blank(src[i + m.end():j - len(end)]) + end); i = j; continue
        if c == '"' or (c in "bc" and src.startswith('"', i + 1) and (i == 0 or not (src[i-1].isalnum() or src[i-1] == "_"))):
            start = i + (0 if c == '"' else 1)
            if c == "c": cstr.append(src.count("\n", 0, i) + 1)
            j = start + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append(src[i:start + 1] + blank(src[start + 1:j]) + '"'); i = j + 1; continue
        if c == "'":
            m = re.match(r"'(\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F_]+\}|.)|[^\\'\n])'", src[i:i + 16])
            if m:
                out.append("'" + " " * (m.end() - 2) + "'"); i += m.end(); continue
        out.append(c); i += 1
    return "".join(out), cstr

PATTERNS = [
    # (version, feature, regex over stripped code)
    ("1.77", "offset_of!", r"\boffset_of!"),
    ("1.78", "#[diagnostic::...] attributes", r"#\s*\[\s*diagnostic::"),
    ("1.79", "inline const blocks", r"\bconst\s*\{"),
    ("1.81", "#[expect] lint attributes", r"#!?\s*\[\s*expect\s*\("),
    ("1.82", "&raw const / &raw mut", r"&\s*raw\s+(const|mut)\b"),
    ("1.82", "precise capturing (use<..>)", r"\buse\s*<"),
    ("1.82", "unsafe extern blocks", r"\bunsafe\s+extern\s*(\"[^\"]*\"\s*)?\{"),
    ("1.82", "unsafe attributes (#[unsafe(..)])", r"#\s*\[\s*unsafe\s*\("),
    ("1.85", "async closures", r"\basync\s+(move\s+)?\|"),
    ("1.85", "#[diagnostic::do_not_recommend]", r"diagnostic::do_not_recommend"),
    ("1.88", "cfg(true) / cfg(false)", r"(#!?\s*\[\s*cfg(_attr)?\s*\(|\bcfg!\s*\()[^\]\n]*\b(true|false)\b"),
    ("1.88", "naked functions", r"#\s*\[\s*(unsafe\s*\(\s*)?naked\b"),
    ("1.89", "inferred array lengths ([x; _])", r";\s*_\s*\]"),
    ("1.89", "#[repr(u128)] / #[repr(i128)]", r"#\s*\[\s*repr\s*\([^\]]*\b[ui]128\b"),
    ("1.95", "if-let guards on match arms", r"\bif\s+let\b[^{};]*=>"),
]
if any(e == "2024" for e in editions):
    PATTERNS.append(("1.88", "let chains", r"\b(if|while)\s+let\b[^{;]*&&"))

files = []
for top in ["src", "tests"]:
    for d, _, fs in os.walk(top):
        files += [os.path.join(d, f) for f in fs if f.endswith(".rs")]
for top in ["examples", "benches"]:
    if os.path.isdir(top):
        files += [os.path.join(top, f) for f in os.listdir(top) if f.endswith(".rs")]
hits = {}
for path in sorted(files):
    src = open(path, encoding="utf-8").read()
    code, cstr = strip(src)
    for ln in cstr:
        hits.setdefault(("1.77", "C-string literals (c\"..\")"), []).append(f"{path}:{ln}")
    for v, what, rx in PATTERNS:
        for m in re.finditer(rx, code):
            hits.setdefault((v, what), []).append(f"{path}:{code.count(chr(10), 0, m.start()) + 1}")
for (v, what), where in sorted(hits.items(), key=lambda kv: ver(kv[0][0])):
    needs.append((ver(v), f"{what} at {where[0]}" + (f" (+{len(where) - 1} more)" if len(where) > 1 else "")))
print(f"  language: scanned {len(files)} source files, {len(hits)} late feature(s) found"
      + "".join(f"\n    {v} {w}: {', '.join(l[:3])}" for (v, w), l in sorted(hits.items())))

# 4. Standard-library items, as clippy's incompatible_msrv sees them.
api = []
for l in open(os.path.join(work, "clippy.json")):
    m = json.loads(l)
    msg = m.get("message") if m.get("reason") == "compiler-message" else None
    if not msg or not msg.get("code") or msg["code"]["code"] != "clippy::incompatible_msrv":
        continue
    v = re.search(r"stable (?:in a `const` context )?since `([\d.]+)`", msg["message"])
    span = msg["spans"][0]
    snippet = span["text"][0]["text"][span["text"][0]["highlight_start"] - 1:span["text"][0]["highlight_end"] - 1]
    api.append((ver(v.group(1)), f"std item `{snippet}` at {span['file_name']}:{span['line_start']}"))
if api:
    needs.append(max(api))
print(f"  standard library: {len(set(api))} use(s) of items newer than the edition"
      + (f", newest: {show(max(api)[0])} ({max(api)[1]})" if api else ""))

code_needs = [n for n in needs if not n[1].startswith("dependency")]
code_floor = max(code_needs)
dep_floor_all = max(n for n in needs if n[1].startswith("dependency"))
print(f"  the code needs {show(code_floor[0])}: {code_floor[1]}")
print(f"  the dependencies need {show(dep_floor_all[0])}: {dep_floor_all[1]}")
for v, what in needs:
    if v > msrv:
        failures.append(f"{what} needs Rust {show(v)}")
floor = max(needs)
if failures:
    print(f"check-msrv: FAILED: rust-version {me['rust_version']} is too low:")
    failures = list(dict.fromkeys(failures))
    for f in failures[:12]:
        print(f"  - {f}")
    if len(failures) > 12:
        print(f"  - ... and {len(failures) - 12} more")
    sys.exit(1)
extra = "" if floor[0] == msrv else f" (the floor is {show(floor[0])}: {me['rust_version']} is a choice above it)"
print(f"check-msrv: ok: rust-version {me['rust_version']} = max(code, dependencies), set by {floor[1]}{extra}")
EOF
