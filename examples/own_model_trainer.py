"""Your own model through mtlkit's Trainer: results.json, checkpoints, probes and TensorBoard
as for a registered benchmark.

    python examples/own_model_trainer.py runs/own        # then: tensorboard --logdir runs/own
"""

from __future__ import annotations

import sys
import tempfile

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from mtlkit.own import fit


class Pairs(TensorDataset):
    """Yields (x, {task: target}), the batch format the Trainer reads."""

    def __getitem__(self, i):
        x, digit = super().__getitem__(i)
        return x, {"digit": digit, "high": (digit >= 5).float()}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.heads = nn.ModuleDict({"digit": nn.Linear(64, 10), "high": nn.Linear(64, 1)})

    def forward(self, x):  # the Trainer needs {task: output}
        z = self.trunk(x)
        return {"digit": self.heads["digit"](z), "high": self.heads["high"](z).squeeze(1)}


def accuracy(out, y):
    pred = out.argmax(1) if out.ndim == 2 else (out > 0).float()
    return {"accuracy": float((pred == y).float().mean())}


digits = load_digits()
x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
y = torch.tensor(digits.target)
train = DataLoader(Pairs(x[:1500], y[:1500]), batch_size=100, shuffle=True,
                   generator=torch.Generator().manual_seed(0))
test = DataLoader(Pairs(x[1500:], y[1500:]), batch_size=300)

torch.manual_seed(0)
model = Net()
out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="mtlkit-own-")
log = ["tensorboard"]
try:
    import tensorboard  # noqa: F401
except ImportError:
    log = []  # pip install 'mtlkit[tensorboard]' for event files
results = fit(model, shared=model.trunk,
              losses={"digit": F.cross_entropy, "high": F.binary_cross_entropy_with_logits},
              metrics={"digit": accuracy, "high": accuracy},
              higher_is_better={"digit": {"accuracy": True}, "high": {"accuracy": True}},
              train=train, test=test, aggregator="cagrad", mask="psn", density=0.3,
              epochs=3, lr=3e-3, optimizer="adamw", log=log, out=out)
print(f"wrote {out}/results.json: test {results['tasks']}, "
      f"conflict incidence {results['conflict']['incidence_all']:.3f}")
