#!/usr/bin/env bash
# Is the H200's slow mode (issue 26) where the driver puts the buffers? The same GEMM kernel
# on the same shapes ran 0.27 ms on some buffers and 0.41–0.47 ms on others in one process at
# full clocks (device-bench.sh step 2b, 2026-12-04), and ResNet-50's 1×1 conv 256→64 at batch
# 64 and more (its 196 MiB input larger than wgpu's 128 MiB first memory block, so in a block
# of its own) 3.7× slower per image than at batch 32 in every process. This runs those convs
# (GEMM forced, three repeats on fresh buffers each) under four allocation setups and prints,
# for every pass, its time beside the memory blocks its buffers lie in:
#   default           wgpu's `Performance` hints (blocks of 128–256 MiB)
#   align2            every buffer of 2 MiB or more allocated in whole 2 MiB
#   memory-usage      wgpu's `MemoryUsage` hints (blocks of 8–64 MiB: large buffers alone)
#   memory-usage+align2
#
# Here, first: cargo build --release (and the Vulkan loaders in .gl/, as for device-bench.sh)
# Then:        run(command="bash scripts/device-placement.sh", carry=[".gl", "target/release/skipgrad"])
# Environment: OUT (default out/device), SKIPGRAD_BIN (default target/release/skipgrad),
# BATCHES (default "32 64"; "40 48" find where between 98 and 196 MiB a tensor turns slow:
# 123 and 147 MiB inputs), SETUPS (default all four), QUICK=1 (batch 1 and 2: a dry run on a
# CPU adapter).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/device}"
mkdir -p "$OUT"
BIN="${SKIPGRAD_BIN:-target/release/skipgrad}"
BATCHES="${BATCHES:-32 64}"
[ "${QUICK:-0}" = 1 ] && BATCHES="1 2"
if [ -d .gl ] && ! ldconfig -p | grep -q libvulkan; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && ! ls /usr/share/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
export SKIPGRAD_BACKEND=vulkan SKIPGRAD_PLACEMENT=1
export SKIPGRAD_CACHE_DIR="$(mktemp -d)"
# The device tool returns a few files: the summary, and the logs packed in one.
LOGS="$(mktemp -d)"
SUMMARY="$OUT/placement.txt"
: > "$SUMMARY"
for setup in ${SETUPS:-default align2 memory-usage memory-usage+align2}; do
    hints=performance align=""
    case $setup in memory-usage*) hints=memory-usage ;; esac
    case $setup in *align2) align=2 ;; esac
    for batch in $BATCHES; do
        log="$LOGS/placement_${setup}_n$batch.log"
        SKIPGRAD_MEMORY_HINTS=$hints SKIPGRAD_BUFFER_ALIGN_MIB=$align timeout 40 "$BIN" bench --suite gpu \
            --batch "$batch" --kernels gemm --repeat 3 --iters 20 \
            --cases r50_conv1x1_c256to64_56x56,r50_conv3x3_c64_56x56 --json > /dev/null 2> "$log"
        echo "== $setup, batch $batch (exit $?)" >> "$SUMMARY"
        # Each pass's time, then its blocks (the lines after it).
        grep -A 4 "^placement" "$log" | grep -v "^--" >> "$SUMMARY"
    done
done
tar czf "$OUT/placement_logs.tar.gz" -C "$LOGS" .
cat "$SUMMARY"
