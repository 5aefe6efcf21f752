"""The Trainer with a researcher's own objects (mtlkit.fit) and the loop features: results.json,
TensorBoard event files, autocast, accumulation, clipping and schedules."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import mtlkit
from mtlkit.config import TrainConfig
from mtlkit.errors import ConfigError
from mtlkit.own import fit
from mtlkit.trainer import Trainer


class Pairs(Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.y = {"cls": (self.x[:, 0] > 0).long(), "reg": self.x[:, 1:2] * 2.0}

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], {t: v[i] for t, v in self.y.items()}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
        self.cls = nn.Linear(16, 2)
        self.reg = nn.Linear(16, 1)

    def forward(self, x):
        z = self.body(x)
        return {"cls": self.cls(z), "reg": self.reg(z)}


def accuracy(out, y):
    return {"accuracy": float((out.argmax(1) == y).float().mean())}


def loaders():
    return (DataLoader(Pairs(128, 0), batch_size=32, shuffle=True,
                       generator=torch.Generator().manual_seed(0)),
            DataLoader(Pairs(64, 1), batch_size=64))


def test_fit_own_model_writes_results_and_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    torch.manual_seed(0)
    model = Net()
    train, test = loaders()
    results = fit(model, shared=model.body,
                  losses={"cls": nn.functional.cross_entropy, "reg": nn.functional.mse_loss},
                  metrics={"cls": accuracy}, higher_is_better={"cls": {"accuracy": True}},
                  train=train, test=test, aggregator="upgrad", mask="psn", density=0.5,
                  epochs=2, lr=1e-2, log=["tensorboard"], out=tmp_path, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["aggregator"] == "upgrad" and saved["steps"] == 8
    assert 0 <= saved["tasks"]["cls"]["accuracy"] <= 1 and "loss" in saved["tasks"]["reg"]
    assert 0 <= saved["conflict"]["incidence_all"] <= 1
    assert results["trainable_fraction"] < 0.8
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss/cls", "probe/cosine.incidence", "weights/reg",
            "test/cls/accuracy"} <= tags


def test_fit_refuses_a_model_that_does_not_return_a_dict():
    model = nn.Linear(8, 2)
    train, test = loaders()
    with pytest.raises(ConfigError, match=r"must\s+return \{task: output\}"):
        fit(model, shared=model, losses={"cls": nn.functional.cross_entropy}, train=train,
            test=test, progress=False)


def small(**kw) -> TrainConfig:
    return TrainConfig(benchmark_params={"n_train": 256, "n_val": 64, "n_test": 64},
                       batch_size=64, max_steps=4, epochs=1, seed=0, probes=[], **kw)


def test_accumulation_gives_the_same_update_as_the_whole_batch():
    """LeNet has no BatchNorm: N micro-batches of the mean loss sum to the batch's gradient."""
    a = Trainer(small(aggregator="upgrad"), None, progress=False)
    b = Trainer(small(aggregator="upgrad", accumulation_steps=4), None, progress=False)
    a.fit()
    b.fit()
    for (n, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=n)


def test_bf16_autocast_clipping_and_cosine_schedule_run():
    t = Trainer(small(aggregator="mgda", amp="bf16", grad_clip=0.5, lr_schedule="cosine",
                      warmup_steps=2), None, progress=False)
    res = t.fit()
    assert res["steps"] == 4 and res["skipped_steps"] == 0
    # cosine over 4 steps with 2 warm-up steps: the last step ran at 0.5 * (1 + cos(3pi/4))
    lr = t.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(t.lr * 0.5 * (1 + math.cos(math.pi * 3 / 4)), rel=1e-12)


def test_engine_is_exported_lazily():
    assert mtlkit.MTLBackward.__module__ == "mtlkit.engine.backward"


def test_cli_train_with_tensorboard_amp_and_accumulation(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from mtlkit.cli import main

    out = tmp_path / "run"
    assert main(["train", "--max-steps", "2", "--epochs", "1", "--batch-size", "64",
                 "--benchmark-param", "n_train=256", "--benchmark-param", "n_val=64",
                 "--benchmark-param", "n_test=64", "--aggregator", "upgrad",
                 "--amp", "bf16", "--accumulation-steps", "2", "--grad-clip", "1.0",
                 "--log", "tensorboard", "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["config"]["amp"] == "bf16"
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
