#!/usr/bin/env bash
# The device check, as one prepared run on a lent GPU machine (see the device tool's
# README): the benchmark's standard suite and GPU suite on Vulkan, the reference cases on
# the GPU, and the PyTorch peer with --device cuda (CUDA events, TF32 off), every result as
# JSON under $OUT.
#
# Here, first:  cargo build --release
#               (once) the Vulkan loaders into .gl/, as the device README says
# Then:         run(command="bash scripts/device-bench.sh", carry=[".gl", "target/release/skipgrad"])
#
# Environment: OUT (default out/device), ITERS (default 20), SKIPGRAD_BIN (default
# target/release/skipgrad), SKIP_TORCH=1 to leave the peer out, QUICK=1 for the reduced
# suites (a dry run of every step on a CPU adapter before a device session).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/device}"
ITERS="${ITERS:-20}"
# --quick: the reduced suites (QUICK=1), else the full ones. A plain string, left unquoted
# below (empty: no word), because an empty array under `set -u` is an error in bash < 4.4.
QUICK_FLAG=""
[ "${QUICK:-0}" = 1 ] && QUICK_FLAG="--quick"
BIN="${SKIPGRAD_BIN:-target/release/skipgrad}"
mkdir -p "$OUT"
log() { echo "== $*" | tee -a "$OUT/log.txt"; }

# The Vulkan loader (and EGL for GL), carried as .debs: the machine has the driver, not them.
if [ -d .gl ] && ! ldconfig -p | grep -q libvulkan; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && ! ls /usr/share/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
export SKIPGRAD_BACKEND=vulkan
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.csv" 2>&1

log "adapter"
"$BIN" info --json > "$OUT/info.json" 2>>"$OUT/log.txt"
log "reference cases on the GPU"
"$BIN" check tests/vectors tests/vectors/scale --json > "$OUT/check.json" 2>>"$OUT/log.txt"
tail -c 300 "$OUT/check.json" >> "$OUT/log.txt"
log "standard suite (GPU timestamps)"
"$BIN" bench $QUICK_FLAG --iters "$ITERS" --json > "$OUT/standard.json" 2>>"$OUT/log.txt"
log "standard suite (host clock, as the peer times)"
"$BIN" bench $QUICK_FLAG --iters "$ITERS" --timing wall --json > "$OUT/standard_wall.json" 2>>"$OUT/log.txt"
log "GPU suite"
"$BIN" bench --suite gpu $QUICK_FLAG --iters "$ITERS" --json > "$OUT/gpu_suite.json" 2>>"$OUT/log.txt"
"$BIN" bench --suite gpu $QUICK_FLAG --iters "$ITERS" >> "$OUT/log.txt" 2>&1

# The H200's bimodal residual block (one process in six ran it 3-4x slower): six processes,
# each JSON with the tuner's choices (`tuned`), so a slow one can be told from a fast one by
# its kernels.
log "residual block, six processes"
mkdir -p "$OUT/resnet_processes"
for i in 1 2 3 4 5 6; do
    "$BIN" bench --cases resnet_basic --iters "$ITERS" --json > "$OUT/resnet_processes/$i.json" 2>>"$OUT/log.txt"
    python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['cases'][0]; print('process', sys.argv[2], 'fwd+bwd ms', c['fwd_bwd_ms'])" \
        "$OUT/resnet_processes/$i.json" "$i" >> "$OUT/log.txt" 2>&1
done

# PEER_DEVICE=cpu (with PYTHON pointing at a venv that has torch) dry-runs this part on a
# machine without CUDA; the files keep their names.
PYTHON="${PYTHON:-python3}"
PEER_DEVICE="${PEER_DEVICE:-cuda}"
if [ "${SKIP_TORCH:-0}" != 1 ] && "$PYTHON" -c "import sys, torch; sys.exit(sys.argv[1] == 'cuda' and not torch.cuda.is_available())" "$PEER_DEVICE" 2>/dev/null; then
    log "PyTorch peer on $PEER_DEVICE (cuDNN on CUDA, TF32 off)"
    "$PYTHON" benches/peers/torch_peer.py --device "$PEER_DEVICE" --iters "$ITERS" --json > "$OUT/torch_cuda.json" 2>>"$OUT/log.txt"
    "$PYTHON" benches/peers/torch_peer.py --device "$PEER_DEVICE" --suite gpu $QUICK_FLAG --iters "$ITERS" --json > "$OUT/torch_cuda_suite.json" 2>>"$OUT/log.txt"
    "$PYTHON" benches/peers/torch_train_step.py --device "$PEER_DEVICE" --iters "$ITERS" --json > "$OUT/torch_cuda_train.json" 2>>"$OUT/log.txt"
    "$PYTHON" benches/peers/compare.py "$OUT/standard_wall.json" "$OUT/torch_cuda.json" "$OUT/torch_cuda_train.json" > "$OUT/compare_standard.txt" 2>&1
    "$PYTHON" benches/peers/compare_suite.py "$OUT/gpu_suite.json" "$OUT/torch_cuda_suite.json" > "$OUT/compare_suite.txt" 2>&1
    cat "$OUT/compare_standard.txt" "$OUT/compare_suite.txt" >> "$OUT/log.txt"
else
    log "no PyTorch on $PEER_DEVICE here: peer left out"
fi
# Last (the least needed if time runs out): the GEMM family forced on the GPU suite, so its
# standing shows even where the tuner picked another family; its `tuned` array says which
# tile and weight loader (packed, or OIHW in place) won each pass under auto above.
log "GPU suite, GEMM family forced"
"$BIN" bench --suite gpu $QUICK_FLAG --kernels gemm --iters "$ITERS" --json > "$OUT/gpu_suite_gemm.json" 2>>"$OUT/log.txt"
log "done"
