#!/usr/bin/env python3
"""Time per image of the GPU suite's passes by batch, from `skipgrad bench --suite gpu
--batch N --json` files: a pass whose time per image grows with the batch has a cliff; the
dispatch counts and kernels beside it say which split fired (more dispatches at the larger
batch: parts of a binding, a scratch budget, a loop budget; other kernels: another family
or variant chosen).

    python3 scripts/batch_cliffs.py out/n32.json out/n128.json [...]

Prints one row per (case, pass): ms per image at each batch, the ratio of the largest
batch's to the smallest's, and the dispatches at each; `--max-ratio R` exits 1 when a ratio
passes R (the issue's bound: 1.1 on lavapipe between batch 1 and 4; on a GPU, 4.4/4 = 1.1
between batch 32 and 128).
"""

import argparse
import json
import re
import sys


def batch_of(name):
    m = re.search(r"_n(\d+)(_|$)", name)
    return int(m.group(1)) if m else None


def base_of(name):
    return re.sub(r"_n\d+(?=_|$)", "", name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--max-ratio", type=float, default=None)
    args = ap.parse_args()
    rows = {}
    for f in args.files:
        d = json.load(open(f))
        for r in d["cases"]:
            if r.get("skipped"):
                continue
            n = batch_of(r["case"])
            ms = r["gpu_ms"] if r.get("gpu_ms") is not None else r["wall_ms"]
            rows.setdefault((base_of(r["case"]), r["pass"]), {})[n] = (ms, r["dispatches"], r["kernels"])
    batches = sorted({n for v in rows.values() for n in v})
    head = f"{'case':36} {'pass':12} " + " ".join(f"{'ms/img n' + str(n):>12}" for n in batches)
    print(head + f" {'ratio':>6}  dispatches")
    worst = 0.0
    for (case, p), by in sorted(rows.items()):
        per = {n: by[n][0] / n for n in by}
        lo, hi = min(by), max(by)
        ratio = per[hi] / per[lo] if lo != hi else 1.0
        worst = max(worst, ratio)
        cells = " ".join(f"{per[n]:12.4f}" if n in per else f"{'-':>12}" for n in batches)
        disp = "/".join(str(by[n][1]) for n in sorted(by))
        note = ""
        if lo != hi and by[lo][2] != by[hi][2]:
            note = f"  kernels n{lo} {by[lo][2]} -> n{hi} {by[hi][2]}"
        print(f"{case:36} {p:12} {cells} {ratio:6.2f}  {disp}{note}")
    print(f"worst ratio of time per image, largest batch over smallest: {worst:.2f}")
    if args.max_ratio is not None and worst > args.max_ratio:
        sys.exit(1)


if __name__ == "__main__":
    main()
