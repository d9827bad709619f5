#!/usr/bin/env bash
# Regenerates the README's figures that a run of this machine prints, instead of editing
# them by hand: each block between `<!-- figure: NAME -->` and `<!-- /figure -->` in
# README.md is replaced by the output of its command (filtered where the README shows a
# part), followed by one line that says which command ran, on which adapter, when, and how
# long it took; the plots in docs/ are rewritten from the same runs.
#
#   scripts/readme-figures.sh            every figure (about 10 minutes on lavapipe)
#   scripts/readme-figures.sh gradflow   only the named ones (bench, memory1, memory8,
#                                        memorybc, gradflow, train, stress)
#
# SKIPGRAD_BACKEND picks the adapter as everywhere. Figures measured elsewhere (the H200's,
# the peers') are not touched: the README says where each came from.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=target/release/skipgrad
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$WORK/xdg}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
# A cold tuning cache of its own: the figures include what a fresh machine pays.
export SKIPGRAD_CACHE_DIR="$WORK/cache"

ADAPTER="$("$BIN" info --json | python3 -c 'import json,sys; i=json.load(sys.stdin); print("%s (%s, %s)" % (i["adapter"], i["backend"], i["driver_info"]))')"
WANTED=("$@")
wanted() { [ ${#WANTED[@]} -eq 0 ] || [[ " ${WANTED[*]} " == *" $1 "* ]]; }

# figure NAME FILTER COMMAND...: runs the command, keeps what FILTER (a python expression
# over `lines`, the output's lines) selects, and records it for the README.
figure() {
    local name="$1" filter="$2"
    shift 2
    wanted "$name" || return 0
    echo "== $name: $*" >&2
    local t0 t1
    t0=$(date +%s%N)
    "$@" > "$WORK/$name.out"
    t1=$(date +%s%N)
    python3 - "$WORK/$name.out" "$filter" > "$WORK/$name.txt" <<'EOF'
import sys
lines = open(sys.argv[1]).read().rstrip("\n").split("\n")
print("\n".join(eval(sys.argv[2])))
EOF
    # The command as a user types it: `skipgrad …`, without this run's output folder.
    local shown secs
    shown="$(python3 -c 'import sys; a = sys.argv[2:]; i = a.index("--out-dir") if "--out-dir" in a else None; a = a[:i] + a[i + 2:] if i is not None else a; print(" ".join(["skipgrad"] + a))' "$@")"
    secs=$(python3 -c "print(f'{($t1 - $t0) / 1e9:.1f}')")
    printf '`%s` on %s, %s: %s s (`scripts/readme-figures.sh %s`).\n' \
        "$shown" "$ADAPTER" "$(date -u +%Y-%m-%d)" "$secs" "$name" > "$WORK/$name.note"
}

# Rows of a `memory` table at these depths, with its header and closing line.
MEMORY_ROWS='[l for l in lines if l.lstrip().startswith("L |") or l.split("|")[0].strip() in ("1","8","16","32") or l.startswith(("deepest", "  with"))]'

figure bench 'lines' "$BIN" bench
figure memory1 "$MEMORY_ROWS" "$BIN" memory --out-dir "$WORK/memory1"
figure memory8 "$MEMORY_ROWS" "$BIN" memory --batch 8 --out-dir "$WORK/memory8"
figure memorybc "$MEMORY_ROWS" "$BIN" memory --bc --depths 1,2,4,8,16,32 --out-dir "$WORK/memorybc"
figure gradflow '[l for l in lines if not l.startswith(("adapter", "MSE", "per-layer"))]' \
    "$BIN" gradflow --out-dir "$WORK/gradflow"
figure train '[l.split("; curves:")[0] for l in lines[2:]]' \
    "$BIN" train --arch plain,residual --depth 20 --out-dir "$WORK/train"
figure stress '[l for l in lines if not l.startswith("adapter")]' "$BIN" stress

# The plots the README shows.
[ -f "$WORK/memory8/memory.svg" ] && cp "$WORK/memory8/memory.svg" docs/memory.svg
[ -f "$WORK/memorybc/memory_bc.svg" ] && cp "$WORK/memorybc/memory_bc.svg" docs/memory_bc.svg
[ -f "$WORK/gradflow/gradflow_layers.svg" ] && cp "$WORK/gradflow/gradflow_layers.svg" "$WORK/gradflow/gradflow_depth.svg" docs/
[ -f "$WORK/train/train.svg" ] && cp "$WORK/train/train.svg" docs/train.svg

python3 - "$WORK" <<'EOF'
import os, re, sys
work = sys.argv[1]
text = open("README.md").read()
def block(m):
    name = m.group(1)
    out = os.path.join(work, name + ".txt")
    if not os.path.exists(out):
        return m.group(0)
    body = open(out).read().rstrip("\n")
    note = open(os.path.join(work, name + ".note")).read().rstrip("\n")
    return f"<!-- figure: {name} -->\n```text\n{body}\n```\n{note}\n<!-- /figure -->"
new, n = re.subn(r"<!-- figure: (\w+) -->.*?<!-- /figure -->", block, text, flags=re.S)
open("README.md", "w").write(new)
print(f"README.md: {n} figure blocks, {len([f for f in os.listdir(work) if f.endswith('.txt')])} regenerated", file=sys.stderr)
EOF
