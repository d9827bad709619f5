"""More `op = torchvision_module` cases of module `batchnorm2d`, in the format of README.md here
(the six cases beside this script came with the project; these are ours): batch 1 in both modes,
a long channel (18,432 values) whose mean is 200 standard deviations from 0 (a one-pass
float32 sum of squares loses the variance; as far from 0 as float32 can still represent the
normalised values within the tolerance: PyTorch's own float32 forward is checked to meet it), a 1×1 spatial map, and `momentum=None` (a cumulative average) after four batches.

Rerun: python3 -m venv V && V/bin/pip install torch torchvision safetensors numpy &&
       V/bin/python tests/vectors/bn/make_bn_vectors.py
"""
import json
import os

import torch
import torchvision
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def case(name, mode, seed, x, momentum=0.1, tracked=3):
    torch.manual_seed(seed)
    c = x.shape[1]
    bn = torch.nn.BatchNorm2d(c, eps=1e-5, momentum=momentum).double()
    with torch.no_grad():
        # Away from the defaults, so an engine that ignores one of them fails.
        bn.weight.copy_(0.5 + torch.rand(c, dtype=torch.float64))
        bn.bias.copy_(0.2 * torch.randn(c, dtype=torch.float64))
        bn.running_mean.copy_(0.1 * torch.randn(c, dtype=torch.float64))
        bn.running_var.copy_(0.5 + torch.rand(c, dtype=torch.float64))
        bn.num_batches_tracked.fill_(tracked)
        # The stored float32 values are the inputs: round the parameters first.
        for p in [bn.weight, bn.bias, bn.running_mean, bn.running_var]:
            p.copy_(p.float().double())
    state = {k: v.clone() for k, v in bn.state_dict().items()}
    x = x.float().double().requires_grad_(True)
    bn.train(mode == "train")
    out = bn(x)
    grad_out = torch.randn(out.shape, dtype=torch.float64).float().double()
    out.backward(grad_out)
    tensors = {"x": x.detach(), "out": out.detach(), "grad_out": grad_out, "grad_x": x.grad,
               "grad_weight": bn.weight.grad, "grad_bias": bn.bias.grad}
    for k, v in state.items():
        tensors[k] = v
    if mode == "train":
        for k, v in bn.state_dict().items():
            if k.startswith("running_") or k == "num_batches_tracked":
                tensors["new_" + k] = v.clone()
    tensors = {k: (v.contiguous() if v.dtype == torch.int64 else v.detach().float().contiguous())
               for k, v in tensors.items()}
    pytorch_float32_meets_the_tolerance(tensors, mode, momentum)
    metadata = {"op": "torchvision_module", "case": name, "module": "batchnorm2d", "mode": mode,
                "seed": str(seed), "min_abs_preact": "inf", "eps": "1e-05",
                "momentum": "None" if momentum is None else str(momentum),
                "torch_version": torch.__version__, "torchvision_version": torchvision.__version__}
    save_file(tensors, os.path.join(HERE, name + ".safetensors"), metadata)
    return {"file": name + ".safetensors", "metadata": metadata,
            "tensors": {k: list(v.shape) for k, v in tensors.items()}}


def pytorch_float32_meets_the_tolerance(t, mode, momentum):
    """PyTorch's float32 CPU module on the stored inputs is within 1e-4·(1+|ref|) of every
    result: a case float32 cannot meet is not a test of an engine."""
    bn = torch.nn.BatchNorm2d(t["x"].shape[1], momentum=momentum)
    bn.load_state_dict({k: t[k] for k in ["weight", "bias", "running_mean", "running_var",
                                          "num_batches_tracked"]})
    bn.train(mode == "train")
    x = t["x"].clone().requires_grad_(True)
    out = bn(x)
    out.backward(t["grad_out"])
    for k, v in [("out", out), ("grad_x", x.grad), ("grad_weight", bn.weight.grad),
                 ("grad_bias", bn.bias.grad)]:
        err = ((v.detach() - t[k]).abs() / (1 + t[k].abs())).max().item()
        assert err <= 1e-4, f"PyTorch float32 misses {k} by {err:.2e}"


def main():
    torch.manual_seed(7)
    g = torch.Generator().manual_seed(7)
    made = [
        case("bn_train_c3_1x9x11_n1", "train", 201, torch.randn(1, 3, 9, 11, generator=g)),
        case("bn_eval_c3_1x9x11_n1", "eval", 202, torch.randn(1, 3, 9, 11, generator=g)),
        case("bn_train_c4_2x96x96_offset", "train", 203,
             10.0 + 0.05 * torch.randn(2, 4, 96, 96, generator=g)),
        case("bn_train_c5_64x1x1", "train", 204, torch.randn(64, 5, 1, 1, generator=g)),
        case("bn_train_c3_2x6x6_momentum_none", "train", 205, torch.randn(2, 3, 6, 6, generator=g),
             momentum=None, tracked=4),
    ]
    path = os.path.join(HERE, "manifest_ours.json")
    with open(path, "w") as f:
        json.dump(made, f, indent=1)
    print(f"wrote {len(made)} cases and {os.path.basename(path)}")


if __name__ == "__main__":
    main()
