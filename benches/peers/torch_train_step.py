"""PyTorch peer of skipgrad's training-step benchmark cases: the same networks (the modules
in tests/train/make_train_vectors.py), the same step (forward, mean squared error, backward,
SGD with lr 0.01 and momentum 0.9), float32, timed by the host clock around a synchronised
run, as `skipgrad bench` times them.

    python3 -m venv V && V/bin/pip install torch safetensors numpy
    V/bin/python benches/peers/torch_train_step.py [--device cpu|cuda] [--iters 10] [--json]

`--json` prints {"peer", "device", "cases": [{"case", "forward_ms", "fwd_bwd_ms"}]}, which
joins on `case` with `skipgrad bench --json` (forward = forward + loss; fwd_bwd = the whole
training step).
"""

import argparse
import importlib.util
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "nets", os.path.join(HERE, "..", "..", "tests", "train", "make_train_vectors.py"))
nets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nets)

CASES = [("residual", 20), ("dense", 12)]


def timed(fn, iters, device):
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for arch, depth in CASES:
        torch.manual_seed(7)
        model = nets.ARCHS[arch](depth, 16).to(a.device)
        x = torch.randn(8, 16, 16, 16, device=a.device)
        target = torch.randn(8, 16, 16, 16, device=a.device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def forward():
            F.mse_loss(model(x), target)

        def step():
            opt.zero_grad()
            loss = F.mse_loss(model(x), target)
            loss.backward()
            opt.step()

        rows.append({
            "case": f"train_step_{arch}_d{depth}_c16_16x16_n8",
            "forward_ms": timed(forward, a.iters, a.device),
            "fwd_bwd_ms": timed(step, a.iters, a.device),
        })
    name = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    if a.json:
        print(json.dumps({"peer": f"torch {torch.__version__}", "device": name, "cases": rows}))
        return
    print(f"torch {torch.__version__} on {name} (threads {torch.get_num_threads()})")
    for r in rows:
        print(f"{r['case']:40} forward {r['forward_ms']:9.3f} ms   step {r['fwd_bwd_ms']:9.3f} ms")


if __name__ == "__main__":
    main()
