#!/usr/bin/env python3
"""Join `skipgrad bench --suite gpu --json` with `torch_peer.py --suite gpu --json` on
(case, pass) and print both times, the ratio (above 1: skipgrad faster) and skipgrad's
share of the nominal fp32 peak where the adapter's is known.

    python3 benches/peers/compare_suite.py skipgrad_suite.json torch_suite.json
"""
import json
import sys


def main(ours_path, peer_path):
    ours = json.load(open(ours_path))
    peer = json.load(open(peer_path))
    theirs = {(c["case"], c["pass"]): c for c in peer["cases"] if "ms" in c}
    print(f"{ours.get('engine')} on {ours.get('adapter')}  vs  {peer.get('peer')} on {peer.get('device')}")
    print(f"{'case':36} {'pass':>11} {'ms':>9} {'peer ms':>9} {'x':>6} {'TFLOP/s':>8} {'%nominal':>8}")
    for c in ours["cases"]:
        if c.get("skipped"):
            print(f"{c['case']:36} skipped: {c['skipped']}")
            continue
        ms = c["gpu_ms"] if c.get("gpu_ms") is not None else c["wall_ms"]
        other = theirs.get((c["case"], c["pass"]))
        peer_ms = other["ms"] if other else float("nan")
        nominal = c.get("fraction_of_nominal")
        nominal = f"{100 * nominal:7.1f}%" if nominal is not None else "       -"
        print(f"{c['case']:36} {c['pass']:>11} {ms:9.3f} {peer_ms:9.3f} {peer_ms / ms:6.2f} "
              f"{c['gflops'] / 1e3:8.2f} {nominal}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
