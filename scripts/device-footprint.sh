#!/usr/bin/env bash
# Batch cliffs, the footprint experiment (issue 26): ResNet-50's 1×1 convs ran 3–4× slower
# per image at batch 64 and 128 than at 32 on an H200, GEMM and pixel families alike, while
# the 3×3 c64 conv (a quarter of the input) did not. If the cliff is the memory one dispatch
# touches, working through the batch in parts of at most SKIPGRAD_MAX_BINDING_MIB removes
# it. Times the GEMM family on three convs at batch 32, 64 and 128, with the device's
# binding limit and with 64 and 32 MiB; prints time per image.
#
# Here:  cargo build --release; the Vulkan loaders in .gl/ (see scripts/device-bench.sh)
# Then:  run(command="bash scripts/device-footprint.sh", carry=[".gl", "target/release/skipgrad"])
# Dry run on a CPU adapter: QUICK=1 (batches 1, 2, 4; limits 8 and 6 MiB).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/footprint}"
mkdir -p "$OUT"
BIN="$(pwd)/${SKIPGRAD_BIN:-target/release/skipgrad}"
WORK="$(mktemp -d)"
if [ -d .gl ] && ! ldconfig -p | grep -q libvulkan; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && ! ls /usr/share/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
# One scratch budget for every row, below the smallest binding limit (scratch buffers are
# bound whole).
export SKIPGRAD_BACKEND=vulkan SKIPGRAD_CACHE_DIR="$WORK/cache" SKIPGRAD_SCRATCH_BUDGET_MIB=16
BATCHES="32 64 128"
LIMITS="device 64 32"
ITERS="${ITERS:-20}"
if [ "${QUICK:-0}" = 1 ]; then
    BATCHES="1 2 4"
    LIMITS="device 8 6"
    ITERS=2
fi
CASES=r50_conv1x1_c256to64_56x56,r50_conv1x1_c64to256_56x56,r50_conv3x3_c64_56x56
for limit in $LIMITS; do
    for n in $BATCHES; do
        f="$WORK/fp_${limit}_n$n.json"
        if [ "$limit" = device ]; then
            timeout 90 "$BIN" bench --suite gpu --batch "$n" --kernels gemm --cases $CASES --iters "$ITERS" --json > "$f" 2>>"$OUT/log.txt"
        else
            SKIPGRAD_MAX_BINDING_MIB=$limit timeout 90 "$BIN" bench --suite gpu --batch "$n" --kernels gemm --cases $CASES --iters "$ITERS" --json > "$f" 2>>"$OUT/log.txt"
        fi
        echo "limit $limit batch $n: exit $?" >> "$OUT/log.txt"
    done
done
python3 - "$WORK" <<'EOF' | tee "$OUT/footprint.txt"
import glob, json, os, re, sys
rows = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "fp_*.json"))):
    limit, n = re.match(r"fp_(\w+)_n(\d+)\.json", os.path.basename(path)).groups()
    try:
        cases = json.load(open(path))["cases"]
    except Exception as e:
        print(f"{path}: {e}")
        continue
    for c in cases:
        ms = c["gpu_ms"] if c["gpu_ms"] is not None else c["wall_ms"]
        name = re.sub(r"_n\d+$", "", c["case"])
        rows.setdefault((name, c["pass"], limit), {})[int(n)] = (ms / int(n), c["dispatches"])
batches = sorted({n for v in rows.values() for n in v})
print(f"{'case':32} {'pass':12} {'binding':>8} " + " ".join(f"{'ms/img n' + str(n):>14}" for n in batches) + "  dispatches")
for (name, p, limit), v in sorted(rows.items()):
    cells = " ".join(f"{v[n][0]:14.4f}" if n in v else f"{'-':>14}" for n in batches)
    print(f"{name:32} {p:12} {limit:>8} {cells}  " + "/".join(str(v[n][1]) if n in v else "-" for n in batches))
EOF
tar czf "$OUT/footprint.tar.gz" -C "$WORK" $(cd "$WORK" && ls fp_*.json)
