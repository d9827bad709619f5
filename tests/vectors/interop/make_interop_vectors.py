"""Generates tests/vectors/interop/: state_dicts exactly as PyTorch users save them, and
what the module computes, so skipgrad is checked to load them unchanged.

    V/bin/python tests/vectors/interop/make_interop_vectors.py

- notebook_skipconnection.safetensors: the seed notebook's SkipConnection module,
  `safetensors.torch.save_file(model.state_dict(), ...)` (names conv_layer1.*, conv_layer2.*);
- notebook_skipconnection_f64.safetensors: the same in float64, with an int64 entry
  (`num_batches_tracked`) the model does not use;
- notebook_skipconnection_bf16.safetensors: the same in bfloat16;
- basic_nobias.safetensors: a basic residual block whose convs have bias=False;
- *_io.safetensors: an input `x` and the module's float64 output `out` for each.
"""

import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.dirname(os.path.abspath(__file__))


class SkipConnection(nn.Module):  # the seed notebook's module
    def __init__(self):
        super().__init__()
        self.conv_layer1 = nn.Conv2d(3, 6, 2, stride=2, padding=2)
        self.relu = nn.ReLU(inplace=True)
        self.conv_layer2 = nn.Conv2d(6, 3, 2, stride=2, padding=2)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, input):
        x = self.conv_layer1(input)
        x = self.relu(x)
        x = self.conv_layer2(x)
        x = self.relu2(x)
        return x + input


class BasicNoBias(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))) + x)


def io(name, model, x):
    with torch.no_grad():
        out = model.double()(x.double())
    save_file({"x": x, "out": out.float()}, os.path.join(OUT, f"{name}_io.safetensors"))


torch.manual_seed(3)
m = SkipConnection()
x = torch.randn(2, 3, 4, 4)
save_file(m.state_dict(), os.path.join(OUT, "notebook_skipconnection.safetensors"))
sd64 = {k: v.double() for k, v in m.state_dict().items()}
sd64["num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
save_file(sd64, os.path.join(OUT, "notebook_skipconnection_f64.safetensors"))
io("notebook_skipconnection", m, x)
# bfloat16: the module's output from the rounded weights.
sd16 = {k: v.to(torch.bfloat16) for k, v in m.state_dict().items()}
save_file(sd16, os.path.join(OUT, "notebook_skipconnection_bf16.safetensors"))
m16 = SkipConnection()
m16.load_state_dict({k: v.float() for k, v in sd16.items()})
io("notebook_skipconnection_bf16", m16, x)

torch.manual_seed(4)
b = BasicNoBias(4)
save_file(b.state_dict(), os.path.join(OUT, "basic_nobias.safetensors"))
io("basic_nobias", b, torch.randn(2, 4, 5, 5))
print(sorted(os.listdir(OUT)))
