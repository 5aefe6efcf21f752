"""Your own model and your own loop: MTLBackward with PSN sparse training, UPGrad and the
cosine conflict probe.

Two tasks on scikit-learn's bundled handwritten digits (1797 8x8 images, no download): which
digit (10 classes) and whether it is >= 5 (binary). Runs in a few seconds on a CPU:

    python examples/own_loop.py
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

import mtlkit

torch.manual_seed(0)
digits = load_digits()
x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
digit = torch.tensor(digits.target)
high = (digit >= 5).float()
train, test = slice(0, 1500), slice(1500, None)


class Net(nn.Module):
    """A shared trunk and two heads: nothing mtlkit-specific."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.digit = nn.Linear(64, 10)
        self.high = nn.Linear(64, 1)

    def forward(self, x):
        z = self.trunk(x)
        return self.digit(z), self.high(z).squeeze(1)


model = Net()
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
mtl = mtlkit.MTLBackward(model.trunk, aggregator="upgrad",
                         mask={"name": "psn", "density": 0.3}, probes=["cosine"],
                         optimizer=optimizer)  # the optimizer hook keeps frozen weights fixed
print(mtl)

for epoch in range(5):
    order = torch.randperm(1500)
    for start in range(0, 1500, 100):
        idx = order[start:start + 100]
        out_digit, out_high = model(x[train][idx])
        losses = {"digit": F.cross_entropy(out_digit, digit[train][idx]),
                  "high": F.binary_cross_entropy_with_logits(out_high, high[train][idx])}
        optimizer.zero_grad()
        report = mtl.backward(losses)   # aggregated shared update; each head its own gradient
        optimizer.step()
    print(f"epoch {epoch + 1}: losses {report.losses}, weights {report.weights.tolist()}, "
          f"conflict incidence {report.probes.get('cosine.incidence')}")

with torch.no_grad():
    out_digit, out_high = model(x[test])
    acc_digit = (out_digit.argmax(1) == digit[test]).float().mean().item()
    acc_high = ((out_high > 0).float() == high[test]).float().mean().item()
print(f"test accuracy: digit {acc_digit:.3f}, >= 5 {acc_high:.3f}; "
      f"trainable fraction of the trunk {mtl.mask.trainable_fraction:.2f}")
