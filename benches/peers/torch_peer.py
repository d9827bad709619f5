"""PyTorch peer of `skipgrad bench`: its standard conv and block cases, float32 NCHW, by the
same names, so the JSON joins on `case` (`compare.py`). The training-step cases are in
`torch_train_step.py`. With `--suite gpu`, the cases of `skipgrad bench --suite gpu`
(ResNet-50's convolutions, the batch sweep, the blocks at batch 128), each conv pass timed
alone, as rows `{case, pass, ms}` that `compare_suite.py` joins on (case, pass).

    python3 -m venv V && V/bin/pip install torch safetensors numpy
    V/bin/python benches/peers/torch_peer.py [--device cpu|cuda] [--iters 10] [--json] [--suite gpu [--quick]]

Timing: the median of `--iters` runs after 3 warm-ups; on CUDA by CUDA events around each
run (TF32 off, cuDNN's autotuner on, as a user would run it), on the CPU by the host clock.
`forward_ms` is the forward; `fwd_bwd_ms` the forward plus the gradients of the input and
of every weight and bias (what `skipgrad bench` times).
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

# name: (N, Cin, H, W, Cout, kernel, stride, padding), as in skipgrad::bench::standard_cases.
CONVS = {
    "conv3x3_c64_32x32_n8": (8, 64, 32, 32, 64, 3, 1, 1),
    "conv3x3_c128_16x16_n8": (8, 128, 16, 16, 128, 3, 1, 1),
    "conv1x1_c64to128_32x32_n8": (8, 64, 32, 32, 128, 1, 1, 0),
    "stem7x7_s2_c3to32_64x64_n8": (8, 3, 64, 64, 32, 7, 2, 3),
    "notebook2x2_s2p2_c3to6_4x4_n1": (1, 3, 4, 4, 6, 2, 2, 2),
}


def conv_params(cin, cout, k, device):
    bound = 1.0 / (cin * k * k) ** 0.5
    w = torch.empty(cout, cin, k, k, device=device).uniform_(-bound, bound)
    b = torch.empty(cout, device=device).uniform_(-bound, bound)
    return [w.requires_grad_(), b.requires_grad_()]


def case_model(name, device):
    """(input shape, parameters, forward) of a case."""
    if name in CONVS:
        n, cin, h, w, cout, k, s, p = CONVS[name]
        params = conv_params(cin, cout, k, device)
        return (n, cin, h, w), params, lambda x: F.conv2d(x, *params, stride=s, padding=p)
    if name == "resnet_basic_c64_32x32_n8":
        params = conv_params(64, 64, 3, device) + conv_params(64, 64, 3, device)

        def resnet(x):
            h = F.relu(F.conv2d(x, params[0], params[1], padding=1))
            return F.relu(F.conv2d(h, params[2], params[3], padding=1) + x)

        return (8, 64, 32, 32), params, resnet
    if name == "dense_l6_k12_c24_16x16_n8":
        params = [t for i in range(6) for t in conv_params(24 + 12 * i, 12, 3, device)]

        def dense(x):
            feats = [x]
            for i in range(6):
                inp = F.relu(torch.cat(feats, 1))
                feats.append(F.conv2d(inp, params[2 * i], params[2 * i + 1], padding=1))
            return torch.cat(feats, 1)

        return (8, 24, 16, 16), params, dense
    raise ValueError(name)


# ResNet-50's distinct convolutions: (Cin, H, W, Cout, kernel, stride, padding), as in
# skipgrad::bench::suite.
RESNET50 = {
    "r50_conv3x3_c64_56x56": (64, 56, 56, 64, 3, 1, 1),
    "r50_conv3x3_c128_28x28": (128, 28, 28, 128, 3, 1, 1),
    "r50_conv3x3_c256_14x14": (256, 14, 14, 256, 3, 1, 1),
    "r50_conv3x3_c512_7x7": (512, 7, 7, 512, 3, 1, 1),
    "r50_conv1x1_c256to64_56x56": (256, 56, 56, 64, 1, 1, 0),
    "r50_conv1x1_c64to256_56x56": (64, 56, 56, 256, 1, 1, 0),
    "r50_stem7x7_s2_c3to64_224x224": (3, 224, 224, 64, 7, 2, 3),
    "r50_conv3x3_s2_c128_56x56": (128, 56, 56, 128, 3, 2, 1),
    "r50_conv1x1_s2_c256to512_56x56": (256, 56, 56, 512, 1, 2, 0),
}


def suite_cases(quick):
    """The GPU suite's cases: (name, conv shape or None for a block, batch)."""
    batches, sweep, block = ([1], [1, 2], 2) if quick else ([32, 128], [1, 8, 32, 128], 128)
    for n in batches:
        for name, (cin, h, w, cout, k, s, p) in RESNET50.items():
            yield f"{name}_n{n}", (n, cin, h, w, cout, k, s, p)
    for n in sweep:
        yield f"sweep_conv3x3_c64_32x32_n{n}", (n, 64, 32, 32, 64, 3, 1, 1)
    yield f"resnet_basic_c64_32x32_n{block}", None
    yield f"dense_l6_k12_c24_16x16_n{block}_shared", None


def run_suite(a):
    rows = []
    for name, shape in suite_cases(a.quick):
        try:
            if shape is None:
                base = "resnet_basic_c64_32x32_n8" if name.startswith("resnet") else "dense_l6_k12_c24_16x16_n8"
                in_shape, params, forward = case_model(base, a.device)
                n = int(name.split("_n")[-1].split("_")[0])
                x = torch.randn(n, *in_shape[1:], device=a.device)
                with torch.no_grad():
                    rows.append({"case": name, "pass": "forward", "ms": median_ms(lambda: forward(x), a.iters, a.device)})
                xg = x.clone().requires_grad_()

                def fb():
                    y = forward(xg)
                    torch.autograd.grad(y, [xg] + params, torch.ones_like(y))

                rows.append({"case": name, "pass": "fwd_bwd", "ms": median_ms(fb, a.iters, a.device)})
            else:
                rows.extend(conv_passes(name, shape, a))
        except RuntimeError as e:  # out of memory at batch 128
            rows.append({"case": name, "pass": "-", "skipped": str(e).split("\n")[0]})
        if a.device == "cuda":
            torch.cuda.empty_cache()
        if not a.json:
            for r in rows:
                if r["case"] == name:
                    print(f"{name:36} {r['pass']:>11} {r.get('ms', float('nan')):10.3f}")
    return rows


def conv_passes(name, shape, a):
    """A conv's forward, input gradient and weight (+ bias) gradient, each timed alone."""
    n, cin, h, w, cout, k, s, p = shape
    wt, b = conv_params(cin, cout, k, a.device)
    x = torch.randn(n, cin, h, w, device=a.device)
    with torch.no_grad():
        fwd = median_ms(lambda: F.conv2d(x, wt, b, stride=s, padding=p), a.iters, a.device)
        go = torch.randn_like(F.conv2d(x, wt, b, stride=s, padding=p))
        # The gradients one at a time, as cuDNN computes them (no forward in the time).
        gx = median_ms(lambda: torch.nn.grad.conv2d_input(x.shape, wt, go, stride=s, padding=p),
                       a.iters, a.device)

        def wgrad():
            torch.nn.grad.conv2d_weight(x, wt.shape, go, stride=s, padding=p)
            go.sum((0, 2, 3))

        gw = median_ms(wgrad, a.iters, a.device)
    return [{"case": name, "pass": pass_, "ms": ms}
            for pass_, ms in (("forward", fwd), ("input_grad", gx), ("weight_grad", gw))]


def median_ms(fn, iters, device):
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--cases", default="", help="only cases containing one of these (comma-separated)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--suite", default="standard", choices=["standard", "gpu"])
    ap.add_argument("--quick", action="store_true", help="with --suite gpu: batches 1 and 2")
    a = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    if a.suite == "gpu":
        rows = run_suite(a)
        device = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
        if a.json:
            print(json.dumps({"peer": f"pytorch {torch.__version__} {a.device}", "device": device,
                              "suite": "gpu", "cases": rows}))
        return
    names = list(CONVS) + ["resnet_basic_c64_32x32_n8", "dense_l6_k12_c24_16x16_n8"]
    wanted = [c for c in a.cases.split(",") if c]
    rows = []
    for name in names:
        if wanted and not any(w in name for w in wanted):
            continue
        shape, params, forward = case_model(name, a.device)
        x = torch.randn(*shape, device=a.device)
        with torch.no_grad():
            fwd = median_ms(lambda: forward(x), a.iters, a.device)
        xg = x.clone().requires_grad_()

        def fwd_bwd():
            y = forward(xg)
            torch.autograd.grad(y, [xg] + params, torch.ones_like(y))

        fb = median_ms(fwd_bwd, a.iters, a.device)
        rows.append({"case": name, "forward_ms": fwd, "fwd_bwd_ms": fb})
        if not a.json:
            print(f"{name:36} {fwd:10.3f} {fb:10.3f}")
    device = torch.cuda.get_device_name() if a.device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    if a.json:
        print(json.dumps({"peer": f"pytorch {torch.__version__} {a.device}", "device": device, "cases": rows}))


if __name__ == "__main__":
    main()
