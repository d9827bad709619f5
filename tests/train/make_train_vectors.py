"""Generates tests/train/*.safetensors: PyTorch's numbers for skipgrad's Network.

    python3 -m venv V && V/bin/pip install torch safetensors numpy
    V/bin/python tests/train/make_train_vectors.py

For each (arch, depth) a file holds the network's initial state_dict (PyTorch's default init,
float32, under its own names), a batch `x` and a `target`, and what PyTorch computes from
them in float64: `grad_norm.<weight name>` (the L2 norm of every weight's gradient of
mse(net(x), target)), then 20 steps of SGD (lr 0.01, momentum 0.9, weight decay 1e-4) and of
AdamW (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01) from the same start:
`sgd.losses` / `adamw.losses` (the loss of each step's forward, before its update) and
`sgd.final.<name>` / `adamw.final.<name>` (every parameter after the 20 steps). Metadata also
records how far PyTorch's own float32 run lands from float64 (`f32_*_rel`; for the final
weights, the largest over tensors of the relative L2 distance).
"""

import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.dirname(os.path.abspath(__file__))


# The definitions skipgrad's Network follows (issue: "Training on the GPU"); they fix the names.
class Plain(nn.Module):
    def __init__(self, depth, c):
        super().__init__()
        self.layers = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1) for _ in range(depth)])

    def forward(self, x):
        for conv in self.layers:
            x = F.relu(conv(x))
        return x


class Basic(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))) + x)


class Residual(nn.Module):
    def __init__(self, depth, c):
        super().__init__()
        self.blocks = nn.ModuleList([Basic(c) for _ in range(depth // 2)])

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


class DenseBlock(nn.Module):
    def __init__(self, c, k, n):
        super().__init__()
        for i in range(n):
            self.add_module(f"layer{i}", nn.Conv2d(c + i * k, k, 3, padding=1))
        self.n = n

    def forward(self, x):
        feats = [x]
        for i in range(self.n):
            feats.append(getattr(self, f"layer{i}")(F.relu(torch.cat(feats, 1))))
        return torch.cat(feats, 1)


class Dense(nn.Module):
    def __init__(self, depth, c, k=12):
        super().__init__()
        self.block = DenseBlock(c, k, depth)
        self.transition = nn.Conv2d(c + depth * k, c, 1)

    def forward(self, x):
        return self.transition(self.block(x))


ARCHS = {"plain": Plain, "residual": Residual, "dense": Dense}


def train(model, x, target, make_opt, steps=20):
    opt = make_opt(model.parameters())
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.mse_loss(model(x), target)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}


def sgd(params):
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)


def adamw(params):
    return torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)


def rel(a, b):
    return (a - b).norm().item() / max(b.norm().item(), 1e-30)


def case(arch, depth, c=8, n=2, hw=8, seed=0, stem=None):
    torch.manual_seed(seed)
    model = ARCHS[arch](depth, c)
    init = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, c, hw, hw, generator=g)
    target = torch.randn(n, c, hw, hw, generator=g)
    out = {k: v for k, v in init.items()}
    out["x"], out["target"] = x, target
    meta = {"arch": arch, "depth": str(depth), "channels": str(c), "seed": str(seed),
            "sgd": "lr=0.01 momentum=0.9 weight_decay=1e-4", "adamw": "lr=1e-3 betas=(0.9,0.999) eps=1e-8 weight_decay=0.01",
            "steps": "20"}

    def fresh(dtype):
        m = ARCHS[arch](depth, c).to(dtype)
        m.load_state_dict({k: v.to(dtype) for k, v in init.items()})
        return m

    # Gradient norms, float64 (and float32 to see PyTorch's own spread).
    norms = {}
    for dtype in (torch.float64, torch.float32):
        m = fresh(dtype)
        F.mse_loss(m(x.to(dtype)), target.to(dtype)).backward()
        norms[dtype] = {k: p.grad.norm().item() for k, p in m.named_parameters() if k.endswith("weight")}
    for k, v in norms[torch.float64].items():
        out[f"grad_norm.{k}"] = torch.tensor([v])
    meta["f32_grad_norm_rel"] = "%.3g" % max(abs(norms[torch.float32][k] - v) / v for k, v in norms[torch.float64].items())

    for name, make in (("sgd", sgd), ("adamw", adamw)):
        l64, w64 = train(fresh(torch.float64), x.double(), target.double(), make)
        l32, w32 = train(fresh(torch.float32), x, target, make)
        out[f"{name}.losses"] = torch.tensor(l64)
        for k, v in w64.items():
            out[f"{name}.final.{k}"] = v
        meta[f"f32_{name}_loss_rel"] = "%.3g" % max(abs(a - b) / abs(b) for a, b in zip(l32, l64))
        meta[f"f32_{name}_final_rel"] = "%.3g" % max(rel(w32[k].double(), w64[k]) for k in w64)

    path = os.path.join(OUT, f"{stem or f'{arch}_d{depth}'}.safetensors")
    save_file({k: v.float().contiguous() for k, v in out.items()}, path, metadata=meta)
    print(f"{arch} d{depth}: {os.path.getsize(path) / 2**10:.0f} KiB", {k: v for k, v in meta.items() if k.startswith("f32")})


if __name__ == "__main__":
    for arch in ("plain", "residual", "dense"):
        case(arch, 12)
    case("residual", 20)
    case("dense", 4)
    # Sums under cancellation: the first layer's weight gradient of a deep plain stack is
    # ~1e-6 while its terms are not, and AdamW divides by its magnitude, so float32 rounding
    # in the weight and bias sums shows in the final weights (issue 23).
    case("plain", 12, c=8, n=4, hw=12, stem="plain_d12_c8_12x12_n4")
