"""PyTorch peer of `skipgrad bench`: its standard conv and block cases, float32 NCHW, by the
same names, so the JSON joins on `case` (`compare.py`). The training-step cases are in
`torch_train_step.py`.

    python3 -m venv V && V/bin/pip install torch safetensors numpy
    V/bin/python benches/peers/torch_peer.py [--device cpu|cuda] [--iters 10] [--json]

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
    a = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
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
