"""Generates tests/vectors/scale/: reference cases for long reductions and non-finite values,
in the same .safetensors case format as tests/vectors/ (see its README).

    python3 -m venv V && V/bin/pip install torch safetensors numpy
    V/bin/python tests/vectors/scale/make_scale_vectors.py

Inputs are drawn in float32 from a seeded generator; forward and backward run in float64 on
the CPU (PyTorch autograd, upstream gradient `grad_out`), and results are rounded to float32.
Non-finite inputs are placed by hand; PyTorch's own rules give the reference (relu(NaN) = NaN,
threshold_backward passes the gradient where x is NaN).
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.dirname(os.path.abspath(__file__))


def save(case, op, seed, tensors, **meta):
    md = {"op": op, "case": case, "seed": str(seed)}
    md.update({k: str(v) for k, v in meta.items()})
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    save_file(tensors, os.path.join(OUT, f"{case}.safetensors"), metadata=md)
    size = os.path.getsize(os.path.join(OUT, f"{case}.safetensors"))
    print(f"{case}: {size / 2**20:.2f} MiB")


def conv_case(case, seed, xs, ws, stride=1, pad=0, dilation=1, groups=1, bias=True, poison=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(xs, generator=g, dtype=torch.float32)
    fan_in = ws[1] * ws[2] * ws[3]
    w = (torch.randn(ws, generator=g, dtype=torch.float32) / fan_in**0.5).to(torch.float32)
    b = (torch.randn(ws[0], generator=g, dtype=torch.float32) / fan_in**0.5).to(torch.float32) if bias else None
    if poison:
        poison(x)
    x64 = x.double().requires_grad_()
    w64 = w.double().requires_grad_()
    b64 = b.double().requires_grad_() if bias else None
    out = F.conv2d(x64, w64, b64, stride=stride, padding=pad, dilation=dilation, groups=groups)
    go = torch.randn(out.shape, generator=g, dtype=torch.float32)
    out.backward(go.double())
    t = {"x": x, "weight": w, "out": out, "grad_out": go, "grad_x": x64.grad, "grad_weight": w64.grad}
    if bias:
        t["bias"] = b
        t["grad_bias"] = b64.grad
    save(case, "conv2d", seed, t, stride_h=stride, stride_w=stride, pad_h=pad, pad_w=pad,
         dilation_h=dilation, dilation_w=dilation, groups=groups, has_bias=int(bias),
         in_channels=xs[1], out_channels=ws[0], kernel_h=ws[2], kernel_w=ws[3])


def relu_case(case, seed, xs, poison):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(xs, generator=g, dtype=torch.float32)
    poison(x)
    x64 = x.double().requires_grad_()
    out = torch.relu(x64)
    go = torch.randn(out.shape, generator=g, dtype=torch.float32)
    out.backward(go.double())
    save(case, "relu", seed, {"x": x, "out": out, "grad_out": go, "grad_x": x64.grad})


def nan_inf(x):
    flat = x.view(-1)
    flat[5] = float("nan")
    flat[17] = float("inf")
    flat[30] = float("-inf")
    flat[-1] = float("nan")


# Weight and bias gradients summed over 65,536 pixels (past Mesa's 65,535-iteration limit).
conv_case("scale_conv2d_1x1_wgrad_256x256", 9001, [1, 1, 256, 256], [2, 1, 1, 1])
conv_case("scale_conv2d_3x3_wgrad_256x256", 9002, [1, 1, 256, 256], [1, 1, 3, 3], pad=1)
# Depthwise 3x3 at batch 64 (64 * 32 * 32 = 65,536 pixels per weight).
conv_case("scale_conv2d_3x3_depthwise_b64_32x32", 9003, [64, 2, 32, 32], [2, 1, 3, 3], pad=1, groups=2)
# A forward whose reduction passes 65,535 taps: 8,192 channels x 3x3 = 73,728.
conv_case("scale_conv2d_3x3_c8192_taps73728", 9004, [1, 8192, 2, 2], [2, 8192, 3, 3], pad=1)
# Non-finite inputs: NaN and infinities propagate exactly as in PyTorch.
relu_case("nonfinite_relu_nan_inf", 9005, [1, 2, 4, 5], nan_inf)
conv_case("nonfinite_conv2d_3x3_nan_inf", 9006, [2, 3, 6, 7], [4, 3, 3, 3], pad=1, poison=nan_inf)
conv_case("nonfinite_conv2d_1x1_s2_nan_inf", 9007, [1, 4, 5, 5], [3, 4, 1, 1], stride=2, poison=nan_inf)
