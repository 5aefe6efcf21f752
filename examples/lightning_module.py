"""PyTorch Lightning with any aggregator, mask and probe (pip install 'mtlkit[lightning]').

    python examples/lightning_module.py
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from mtlkit.integrations.lightning import MTLModule


class DigitsModule(MTLModule):
    def __init__(self) -> None:
        super().__init__(aggregator="upgrad", mask={"name": "psn", "density": 0.3},
                         probes=["cosine"])
        self.trunk = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.digit = nn.Linear(64, 10)
        self.high = nn.Linear(64, 1)

    def shared_parameters(self):
        return self.trunk

    def task_losses(self, batch, batch_idx):
        x, digit = batch
        z = self.trunk(x)
        return {"digit": F.cross_entropy(self.digit(z), digit),
                "high": F.binary_cross_entropy_with_logits(self.high(z).squeeze(1),
                                                           (digit >= 5).float())}

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=3e-3, weight_decay=1e-2)


digits = load_digits()
data = TensorDataset(torch.tensor(digits.data, dtype=torch.float32) / 16.0,
                     torch.tensor(digits.target))
torch.manual_seed(0)
module = DigitsModule()
trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=pl.loggers.CSVLogger("lightning_logs"),
                     enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False)
trainer.fit(module, DataLoader(data, batch_size=100, shuffle=True))
print("logged:", sorted(trainer.callback_metrics))
