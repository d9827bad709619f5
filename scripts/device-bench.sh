#!/usr/bin/env bash
# The device check, as one prepared run on a lent GPU machine (see the device tool's
# README), within the 10 minutes the device tool allows a command (BUDGET_SECONDS, default
# 560: the optional steps are skipped, and logged, when too little is left). In order, most
# needed first:
#   1. skipgrad selftest on the benchmark's shapes: every conv family × variant × pass
#      against the f64 oracle, each kernel named before it is compiled, under cuda-gdb where
#      the machine has it (a driver crash then ends the log with the culprit's name and a
#      backtrace);
#   2. first-call latency of a fresh process: cold (no caches), then warm (tuning and
#      pipeline caches on disk from the first); the spread of one kernel's time across
#      processes and buffers, with the clocks;
#   3. the reference cases; the GPU suite (auto), and PyTorch's (cuDNN, TF32 off) beside it;
#      PyTorch's DenseNet-BC block's peak memory and time, plain and memory_efficient, and
#      skipgrad's (`memory --bc`: analytic, accounted and driver bytes, time);
#   4. the GPU suite with the Winograd family forced (by its rule's tile: F(4×4) or F(2×2),
#      and F(3×3, 4×4) or F(3×3, 2×2) for the weight gradients);
#   5. batch cliffs: time per image by batch, with the splits (dispatches) of each;
#   6. the standard suite (GPU timestamps);
#   7. the residual block in six processes with the tuning cache and six without;
#   8. the standard suite by the host clock against PyTorch's;
#   9. the GPU suite with the GEMM family forced.
# A step that dies of a signal (a driver crash) is run once more: the tuner's journal has
# recorded the variant it died in, and the second run skips it.
#
# What comes back: the device tool returns at most 8 files from $OUT, so everything is
# written to a work folder and packed into $OUT/results.tar.gz, beside log.txt, the two
# comparison tables against PyTorch/cuDNN and the batch-cliff table.
#
# Here, first:  cargo build --release
#               (once) the Vulkan loaders into .gl/, as the device README says
# Then:         run(command="bash scripts/device-bench.sh", carry=[".gl", "target/release/skipgrad"])
#
# Environment: OUT (default out/device), ITERS (default 20), SKIPGRAD_BIN (default
# target/release/skipgrad), SKIP_TORCH=1 to leave the peer out, QUICK=1 for the reduced
# suites (a dry run of every step on a CPU adapter before a device session), PYTHON and
# PEER_DEVICE for the peer.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/device}"
ITERS="${ITERS:-20}"
# --quick: the reduced suites (QUICK=1), else the full ones. A plain string, left unquoted
# below (empty: no word), because an empty array under `set -u` is an error in bash < 4.4.
QUICK_FLAG=""
[ "${QUICK:-0}" = 1 ] && QUICK_FLAG="--quick"
BIN="${SKIPGRAD_BIN:-target/release/skipgrad}"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d)/results"
mkdir -p "$WORK"
LOG="$OUT/log.txt"
: > "$LOG"
log() { echo "== $* ($(date +%T))" | tee -a "$LOG"; }
# The tuning and pipeline caches of this run, cold at its start.
export SKIPGRAD_CACHE_DIR="$WORK/cache"
mkdir -p "$SKIPGRAD_CACHE_DIR"

# The device tool allows 10 minutes a command: the steps run most needed first, each within
# what is left of BUDGET_SECONDS (default 560), and the optional ones are skipped when too
# little is left (the log says which).
BUDGET="${BUDGET_SECONDS:-560}"
left() { echo $((BUDGET - SECONDS)); }
# have N WHAT: at least N seconds left, and WHAT's step not named in SKIP_STEPS (words:
# spread, bc, winograd, cliffs, standard, processes, wall, gemm — for a second run that needs only the
# steps a first one lost).
have() {
    local word
    for word in ${SKIP_STEPS:-}; do
        case "$2" in *"($word)"*) log "skipped (SKIP_STEPS): $2"; return 1 ;; esac
    done
    if [ "$(left)" -ge "$1" ]; then return 0; fi
    log "skipped (about $(left) s left of $BUDGET): $2"
    return 1
}

# Runs "$@" with stdout to the file $1, within at most $2 seconds and what is left; once
# more if it died of a signal (exit 128 + n, not the timeout's 124): the tuner's journal has
# recorded the variant it died in, and the second run skips it.
step() {
    local out="$1" max="$2"
    shift 2
    local limit rc
    limit=$(( $(left) - 10 < max ? $(left) - 10 : max ))
    [ "$limit" -ge 10 ] || { log "no time left for: $*"; return 0; }
    timeout "$limit" "$@" > "$out" 2>>"$LOG"
    rc=$?
    if [ $rc -gt 128 ]; then
        log "died of signal $((rc - 128)); once more (the tuner's journal skips what it died in)"
        limit=$(( $(left) - 10 < max ? $(left) - 10 : max ))
        [ "$limit" -ge 10 ] && timeout "$limit" "$@" > "$out" 2>>"$LOG"
        rc=$?
    fi
    [ $rc -eq 0 ] || log "exit $rc: $*"
    return 0
}

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
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$WORK/nvidia-smi.csv" 2>&1

log "adapter"
"$BIN" info --json > "$WORK/info.json" 2>>"$LOG"
head -c 600 "$WORK/info.json" >> "$LOG"

# 1. Every family x variant x pass on the benchmark's shapes at their small batches (the
#    pipelines are the same at any batch: the geometry constants leave the batch out).
log "selftest: every family x variant x pass on the benchmark's shapes"
SELFTEST=("$BIN" selftest --shapes bench --quick)
if command -v cuda-gdb >/dev/null 2>&1; then
    # -batch: run, and on a crash print the backtrace; the selftest's own lines name the
    # kernel it was compiling.
    timeout 200 cuda-gdb -batch -ex run -ex bt --args "${SELFTEST[@]}" > "$WORK/selftest.txt" 2>&1
else
    timeout 200 "${SELFTEST[@]}" > "$WORK/selftest.txt" 2>&1
fi
# Under cuda-gdb the status is gdb's (1 after its `bt` on a process that exited: "No
# stack."); gdb's "[Inferior 1 ... exited ...]" line says how the selftest ended.
echo "selftest: status $? ($(grep -oE "Inferior 1 .*exited[^]]*" "$WORK/selftest.txt" || echo "not under cuda-gdb"))" >> "$LOG"
grep -E "FAIL|kernels passed|^#[0-9]+ |SIGSEGV|signal" "$WORK/selftest.txt" | head -40 >> "$LOG"
tail -n 3 "$WORK/selftest.txt" >> "$LOG"
# The selftest compiled every pipeline into the cache; the latency below starts cold again.
rm -rf "${SKIPGRAD_CACHE_DIR:?}"/*

# 2. A fresh process, cold and warm.
log "first-call latency of a fresh process: cold, then warm (caches from the cold run)"
for run in cold warm; do
    t0=$(date +%s%N)
    timeout 60 "$BIN" check tests/vectors/conv2d_3x3_s1p1_c64to64.safetensors > /dev/null 2>>"$LOG"
    t1=$(date +%s%N)
    echo "check conv2d_3x3_s1p1_c64to64 ($run): $(( (t1 - t0) / 1000000 )) ms" >> "$LOG"
done
ls -l "$SKIPGRAD_CACHE_DIR" >> "$LOG"

# 2b. Spread (the H200 runs of 2026-12-04 timed the same kernel at the same batch 0.26 ms
#     in one process and 0.92 ms in another): the 1×1 256→64 and 3×3 c64 convs at batch 32,
#     GEMM forced, three processes of three repeats each (fresh buffers per repeat), the SM
#     and memory clocks sampled every 100 ms meanwhile. Same within a process and not
#     across: the process (or its clocks); across repeats too: the buffers.
if have 60 "the spread of one kernel across processes and buffers (spread)"; then
    log "spread: same kernels, three processes x three repeats, clocks sampled"
    nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,utilization.gpu,power.draw --format=csv -lms 100 > "$WORK/clocks.csv" 2>&1 &
    SMI=$!
    # Batch 32 on the GPU; 1 in a dry run (lavapipe runs the GEMM family slowly).
    SPREAD_BATCH=32
    [ -n "$QUICK_FLAG" ] && SPREAD_BATCH=1
    for i in 1 2 3; do
        step "$WORK/spread_$i.json" 40 "$BIN" bench --suite gpu --batch $SPREAD_BATCH --kernels gemm --repeat 3 \
            --cases r50_conv1x1_c256to64_56x56,r50_conv3x3_c64_56x56 --iters "$ITERS" --json
        python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print('process', sys.argv[2], 'repeat', c['repeat'], c['case'], c['pass'], 'gpu ms', c['gpu_ms'], 'wall ms', round(c['wall_ms'], 3)) for c in d['cases']]" \
            "$WORK/spread_$i.json" "$i" >> "$OUT/spread.txt" 2>&1
    done
    kill $SMI 2>/dev/null
    cat "$OUT/spread.txt" >> "$LOG"
fi

# 3. Correctness, then the GPU suite and cuDNN beside it.
log "reference cases on the GPU"
step "$WORK/check.json" 60 "$BIN" check tests/vectors tests/vectors/scale tests/vectors/bn --json
tail -c 300 "$WORK/check.json" >> "$LOG"
log "GPU suite"
step "$WORK/gpu_suite.json" 150 "$BIN" bench --suite gpu $QUICK_FLAG --iters "$ITERS" --json

# PEER_DEVICE=cpu (with PYTHON pointing at a venv that has torch) dry-runs the peer on a
# machine without CUDA; the files keep their names.
PYTHON="${PYTHON:-python3}"
PEER_DEVICE="${PEER_DEVICE:-cuda}"
PEER=0
if [ "${SKIP_TORCH:-0}" != 1 ] && "$PYTHON" -c "import sys, torch; sys.exit(sys.argv[1] == 'cuda' and not torch.cuda.is_available())" "$PEER_DEVICE" 2>/dev/null; then
    PEER=1
fi
if [ $PEER = 1 ] && have 60 "the PyTorch suite"; then
    log "PyTorch peer's GPU suite on $PEER_DEVICE (cuDNN on CUDA, TF32 off)"
    step "$WORK/torch_cuda_suite.json" 120 "$PYTHON" benches/peers/torch_peer.py --device "$PEER_DEVICE" --suite gpu $QUICK_FLAG --iters "$ITERS" --json
    "$PYTHON" benches/peers/compare_suite.py "$WORK/gpu_suite.json" "$WORK/torch_cuda_suite.json" > "$OUT/compare_suite.txt" 2>&1
    cat "$OUT/compare_suite.txt" >> "$LOG"
fi

# 3b. PyTorch's DenseNet-BC block, plain and memory_efficient: peak memory and time on CUDA,
#     for the README beside skipgrad's shared strategy (issue 25).
if [ $PEER = 1 ] && have 60 "PyTorch's DenseNet-BC block (bc)"; then
    log "PyTorch's DenseNet-BC block, plain and memory_efficient"
    BC_ITERS=5
    [ -n "$QUICK_FLAG" ] && BC_ITERS=1
    step "$WORK/torch_densenet_bc.json" 60 "$PYTHON" benches/peers/torch_densenet_bc.py --device "$PEER_DEVICE" --iters $BC_ITERS --json
    cat "$WORK/torch_densenet_bc.json" >> "$LOG"
fi
if have 40 "skipgrad's DenseNet-BC block by depth (bc)"; then
    log "skipgrad memory --bc (DenseNet-121's first block shape, naive and shared)"
    step "$WORK/memory_bc.txt" 90 "$BIN" memory --bc --depths 1,8,32 --out-dir "$WORK/memory_bc"
    cat "$WORK/memory_bc.txt" >> "$LOG"
    cp "$WORK/memory_bc.txt" "$OUT/memory_bc.txt" 2>/dev/null
fi

# 4. The Winograd family forced on the GPU suite: its 3x3 forwards, input and weight
#    gradients against what the tuner picked (the other passes run the next family, as
#    forced), and against cuDNN.
if have 90 "the GPU suite with the Winograd family forced (winograd)"; then
    log "GPU suite, Winograd family forced"
    step "$WORK/gpu_suite_winograd.json" 120 "$BIN" bench --suite gpu $QUICK_FLAG --kernels winograd --iters "$ITERS" --json
    if [ $PEER = 1 ]; then
        "$PYTHON" benches/peers/compare_suite.py "$WORK/gpu_suite_winograd.json" "$WORK/torch_cuda_suite.json" > "$OUT/compare_winograd.txt" 2>&1
        cat "$OUT/compare_winograd.txt" >> "$LOG"
    fi
fi

# 5. Batch cliffs (issue 26): time per image by batch for every suite pass (the suite has
#    batch 32 and 128), with the dispatches and kernels of each; then ResNet-50's first
#    3x3 and 1x1 convs at 32, 64, 96 and 128 with the GEMM and pixel families forced, where
#    a knee between two batches says which size a split (or the L2) gives out at.
log "batch cliffs"
python3 scripts/batch_cliffs.py "$WORK/gpu_suite.json" > "$OUT/batch_cliffs.txt" 2>&1
for family in gemm pixel; do
    have 60 "the $family batch sweep (cliffs)" || break
    for n in 32 64 96 128; do
        batch=$n
        if [ -n "$QUICK_FLAG" ]; then
            [ $n -gt 64 ] && continue
            batch=$((n / 32))
        fi
        step "$WORK/cliff_${family}_n$n.json" 60 "$BIN" bench --suite gpu --batch $batch \
            --kernels $family --cases r50_conv3x3_c64_56x56,r50_conv1x1_c256to64_56x56 \
            --iters "$ITERS" --json
    done
    python3 scripts/batch_cliffs.py "$WORK"/cliff_${family}_n*.json >> "$OUT/batch_cliffs.txt" 2>&1
done
cat "$OUT/batch_cliffs.txt" >> "$LOG"

# 6. The standard suite (GPU timestamps).
if have 60 "the standard suite (standard)"; then
    log "standard suite (GPU timestamps)"
    step "$WORK/standard.json" 90 "$BIN" bench $QUICK_FLAG --iters "$ITERS" --json
fi

# 7. The H200's bimodal residual block (one process in five ran it 2.4x slower): six
#    processes with the tuning cache (the same kernels in each, by construction) and six
#    without (each measures for itself), each JSON with the tuner's choices (`tuned`).
if have 90 "the residual block in twelve processes (processes)"; then
    log "residual block, six processes with the tuning cache, six without"
    mkdir -p "$WORK/resnet_processes"
    for mode in cached uncached; do
        for i in 1 2 3 4 5 6; do
            f="$WORK/resnet_processes/${mode}_$i.json"
            if [ $mode = uncached ]; then
                SKIPGRAD_CACHE_DIR=off timeout 30 "$BIN" bench --cases resnet_basic --iters "$ITERS" --json > "$f" 2>>"$LOG"
            else
                timeout 30 "$BIN" bench --cases resnet_basic --iters "$ITERS" --json > "$f" 2>>"$LOG"
            fi
            python3 -c "import json,sys; d=json.load(open(sys.argv[1])); c=d['cases'][0]; print(sys.argv[2], sys.argv[3], 'fwd+bwd ms', c['fwd_bwd_ms'], [ (t['pass'], t['family'], t['variant']) for t in d.get('tuned', []) ])" \
                "$f" "$mode" "$i" >> "$LOG" 2>&1
        done
    done
fi

# 8. The standard suite by the host clock against PyTorch's (its clock) and its training
#    step.
if [ $PEER = 1 ] && have 90 "the standard suite against PyTorch (wall)"; then
    log "standard suite (host clock, as the peer times) and the PyTorch peer"
    step "$WORK/standard_wall.json" 60 "$BIN" bench $QUICK_FLAG --iters "$ITERS" --timing wall --json
    step "$WORK/torch_cuda.json" 60 "$PYTHON" benches/peers/torch_peer.py --device "$PEER_DEVICE" --iters "$ITERS" --json
    step "$WORK/torch_cuda_train.json" 60 "$PYTHON" benches/peers/torch_train_step.py --device "$PEER_DEVICE" --iters "$ITERS" --json
    "$PYTHON" benches/peers/compare.py "$WORK/standard_wall.json" "$WORK/torch_cuda.json" "$WORK/torch_cuda_train.json" > "$OUT/compare_standard.txt" 2>&1
    cat "$OUT/compare_standard.txt" >> "$LOG"
fi

# 9. Last (the least needed if time runs out): the GEMM family forced on the GPU suite, so
#    its standing shows even where the tuner picked another family.
if have 90 "the GPU suite with the GEMM family forced (gemm)"; then
    log "GPU suite, GEMM family forced"
    step "$WORK/gpu_suite_gemm.json" 120 "$BIN" bench --suite gpu $QUICK_FLAG --kernels gemm --iters "$ITERS" --json
fi
"$BIN" tune --show > "$WORK/tune_show.txt" 2>&1
log "done"
cp "$LOG" "$WORK/log.txt"
tar czf "$OUT/results.tar.gz" -C "$(dirname "$WORK")" results
