"""The Lightning adapter: manual optimisation through MTLBackward, probes to the logger."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip("lightning.pytorch", reason="the lightning extra is not installed")

from mtlkit.integrations.lightning import MTLModule  # noqa: E402


class Module(MTLModule):
    def __init__(self) -> None:
        super().__init__(aggregator="upgrad", mask={"name": "psn", "density": 0.4},
                         probes=["cosine"])
        self.encoder = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU())
        self.heads = nn.ModuleDict({"a": nn.Linear(8, 1), "b": nn.Linear(8, 1)})

    def shared_parameters(self):
        return self.encoder

    def task_losses(self, batch, batch_idx):
        x, ya, yb = batch
        z = self.encoder(x)
        return {"a": ((self.heads["a"](z) - ya) ** 2).mean(),
                "b": ((self.heads["b"](z) - yb) ** 2).mean()}

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2, weight_decay=0.1)


class Memory(pl.loggers.Logger):
    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[dict[str, float]] = []

    @property
    def name(self):
        return "memory"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.metrics.append(dict(metrics))


def test_lightning_trains_with_aggregator_mask_and_probes(tmp_path):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    data = TensorDataset(x, x[:, :1] * 2, -x[:, :1] + x[:, 1:2])
    module = Module()
    before = {n: p.detach().clone() for n, p in module.encoder.named_parameters()}
    logger = Memory()
    trainer = pl.Trainer(max_steps=12, accelerator="cpu", logger=logger, log_every_n_steps=1,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, DataLoader(data, batch_size=16))
    mask = module.engine.mask
    moved = 0
    for n, p in module.encoder.named_parameters():
        assert torch.equal(p.detach()[~mask.masks[n]], before[n][~mask.masks[n]]), n
        moved += int((p.detach()[mask.masks[n]] != before[n][mask.masks[n]]).sum())
    assert moved > 0 and module.engine.step == 12
    keys = set().union(*logger.metrics)
    assert {"probe/cosine.incidence", "train/loss/a", "weights/b"} <= keys
