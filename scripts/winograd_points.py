#!/usr/bin/env python3
"""Float32 rounding of Winograd F(m×m, 3×3) by interpolation points and by how the products
are summed over input channels, against the float64 direct sum (benches/NOTES.md, v31).

For random inputs (ReLU'd, or signed) and weights over C input channels, each output's
error is measured per unit of the sum of its terms' magnitudes, and the largest and the rms
over many tiles are printed. The transforms are built from the points by Toom-Cook (Aᵀ and G
from the points, Bᵀ solved from the bilinear identity), every matrix rounded to float32.

    python3 scripts/winograd_points.py --channels 64            # the sets tabulated in v31
    python3 scripts/winograd_points.py --channels 64 --search   # rank every 5-point set

Needs numpy (the PyTorch venv has it); nothing in the tests needs this script.
"""

import argparse
import itertools
from fractions import Fraction as F

import numpy as np


def matrices(points, m):
    """Aᵀ (m × n), G (n × 3), Bᵀ (n × n) for F(m, 3) at `points` (n − 1 finite ones) and ∞."""
    r = 3
    n = m + r - 1
    pts = [F(p) for p in points]
    assert len(pts) == n - 1
    at = np.zeros((m, n))
    g = np.zeros((n, r))
    for j, a in enumerate(pts):
        f = F(1)
        for b in pts[:j] + pts[j + 1:]:
            f *= a - b
        for i in range(m):
            at[i, j] = float(a**i)
        for k in range(r):
            g[j, k] = float(a**k / f)
    at[m - 1, n - 1] = 1
    g[n - 1, r - 1] = 1
    # Bᵀ from Σ_j Aᵀ[i,j] G[j,k] Bᵀ[j,l] = [l = i + k] for every i, k, l.
    rows, rhs = [], []
    for i in range(m):
        for k in range(r):
            for l in range(n):
                row = np.zeros((n, n))
                row[:, l] = at[i, :] * g[:, k]
                rows.append(row.ravel())
                rhs.append(1.0 if l == i + k else 0.0)
    rows, rhs = np.array(rows), np.array(rhs)
    bt = np.linalg.lstsq(rows, rhs, rcond=None)[0]
    if np.abs(rows @ bt - rhs).max() > 1e-9:
        raise ValueError(f"no transform for points {points}")
    return at, g, bt.reshape(n, n)


def error(at, g_mat, bt, channels, block=1, relu=True, tiles=512, seed=0):
    """(largest, rms) error per unit of Σ|terms| of F(m×m, 3×3) in float32, the products
    summed over the channels in blocks of `block` (each block's sum added to the running
    sum), against the float64 direct sum."""
    rng = np.random.default_rng(seed)
    m, n = at.shape
    d = rng.standard_normal((channels, tiles, n, n))
    if relu:
        d = np.maximum(d, 0)
    w = rng.standard_normal((channels, 3, 3)) / np.sqrt(9 * channels)
    y = np.zeros((tiles, m, m))
    mag = np.zeros((tiles, m, m))
    for a in range(3):
        for b in range(3):
            term = d[:, :, a:a + m, b:b + m] * w[:, None, a, b, None, None]
            y += term.sum(0)
            mag += np.abs(term).sum(0)
    f = np.float32
    u = g_mat.astype(f) @ w.astype(f) @ g_mat.T.astype(f)
    v = bt.astype(f) @ d.astype(f) @ bt.T.astype(f)
    acc = np.zeros((tiles, n, n), dtype=f)
    for c0 in range(0, channels, block):
        part = np.zeros((tiles, n, n), dtype=f)
        for c in range(c0, min(c0 + block, channels)):
            part += u[c][None] * v[c]
        acc += part
    out = at.astype(f) @ acc @ at.T.astype(f)
    e = np.abs(out - y) / mag
    return e.max(), np.sqrt((e**2).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--search", action="store_true", help="rank every set of 5 points")
    args = ap.parse_args()
    c = args.channels
    sets = [
        ("F(2×2) 0, ±1", [0, 1, -1], 2),
        ("F(4×4) 0, ±1, ±2 (Lavin)", [0, 1, -1, 2, -2], 4),
        ("F(4×4) 0, ±3/2, ±2/3", [0, F(3, 2), F(-3, 2), F(2, 3), F(-2, 3)], 4),
    ]
    print(f"{c} channels; largest / rms error per unit of Σ|terms|")
    for name, pts, m in sets:
        mats = matrices(pts, m)
        for relu in (True, False):
            cells = []
            for block in (1, 4):
                mx, rms = error(*mats, c, block=block, relu=relu)
                cells.append(f"{'running sum' if block == 1 else 'quads apart'} {mx:.2e} / {rms:.2e}")
            print(f"{name:28s} {'relu' if relu else 'signed':6s}  " + "   ".join(cells))
    if args.search:
        cands = [F(s * a, b) for a, b in [(1, 4), (1, 3), (1, 2), (2, 3), (1, 1), (3, 2), (2, 1), (3, 1), (4, 1)] for s in (1, -1)]
        ranked = []
        for combo in itertools.combinations(cands, 4):
            pts = [F(0), *combo]
            try:
                mats = matrices(pts, 4)
            except ValueError:
                continue
            mx, rms = error(*mats, c, tiles=256)
            ranked.append((rms, mx, ", ".join(str(p) for p in pts)))
        ranked.sort()
        print("best point sets (running sum, relu): rms, largest, points")
        for rms, mx, pts in ranked[:10]:
            print(f"  {rms:.2e} {mx:.2e}  {pts}")


if __name__ == "__main__":
    main()
