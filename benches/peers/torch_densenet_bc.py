"""PyTorch's side of the DenseNet-BC memory comparison (issue 25): torchvision's `_DenseBlock`
in training mode, plain and `memory_efficient=True` (which recomputes each layer's
BN-ReLU-concat-conv1 in backward), one forward+backward — its peak memory above what was
allocated before, and its time.

    python3 benches/peers/torch_densenet_bc.py --device cuda [--json]

The default block is DenseNet-121's shape at the size skipgrad's README measures: growth 32,
bn_size 4, 64 input channels, 32 layers, batch 8, 16×16. On CUDA the peak is
`torch.cuda.max_memory_allocated` (TF32 off, CUDA events for time); on the CPU only the time
is measured (PyTorch has no allocator peak there).
"""
import argparse
import json
import time

import torch
from torchvision.models.densenet import _DenseBlock


def measure(args, efficient):
    torch.manual_seed(0)
    dev = torch.device(args.device)
    block = _DenseBlock(num_layers=args.layers, num_input_features=args.channels,
                        bn_size=args.bn_size, growth_rate=args.growth, drop_rate=0,
                        memory_efficient=efficient).to(dev).train()
    x = torch.randn(args.batch, args.channels, args.size, args.size, device=dev,
                    requires_grad=True)
    out_c = args.channels + args.layers * args.growth
    g = torch.randn(args.batch, out_c, args.size, args.size, device=dev)
    times, peak = [], None
    for i in range(args.iters + 1):
        block.zero_grad(set_to_none=True)
        x.grad = None
        if dev.type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            block(x).backward(g)
            end.record()
            torch.cuda.synchronize()
            ms = start.elapsed_time(end)
            peak = torch.cuda.max_memory_allocated() - base
        else:
            t0 = time.perf_counter()
            block(x).backward(g)
            ms = (time.perf_counter() - t0) * 1e3
        if i > 0:  # the first run warms up
            times.append(ms)
    times.sort()
    return {"strategy": "memory_efficient" if efficient else "plain",
            "peak_bytes": peak, "fwd_bwd_ms": times[len(times) // 2]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--growth", type=int, default=32)
    p.add_argument("--bn-size", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = [measure(args, e) for e in (False, True)]
    if args.json:
        print(json.dumps({"engine": f"pytorch {torch.__version__}", "device": args.device,
                          "config": vars(args), "rows": rows}, indent=1))
        return
    print(f"pytorch {torch.__version__} on {args.device}: DenseNet-BC block, growth {args.growth}, "
          f"bn_size {args.bn_size}, {args.channels} in, {args.layers} layers, batch {args.batch}, "
          f"{args.size}x{args.size}; one training forward+backward (median of {args.iters})")
    for r in rows:
        peak = "-" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 2**20:.1f} MiB"
        print(f"{r['strategy']:>17}: peak {peak:>12}, fwd+bwd {r['fwd_bwd_ms']:.2f} ms")


if __name__ == "__main__":
    main()
