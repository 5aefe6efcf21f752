"""The Trainer's ``model_transform`` hook: it trains the transformed model."""

from __future__ import annotations

import torch

import mtlkit
from mtlkit.config import TrainConfig
from mtlkit.trainer import Trainer

TINY = {"benchmark_params": {"n_train": 128, "n_val": 32, "n_test": 32}, "batch_size": 64,
        "epochs": 1, "max_steps": 2, "threads": 1, "checkpoint": False,
        "probes": ["layer_conflict"]}


def test_trainer_trains_the_transformed_model():
    transform = mtlkit.get_transform("recon", layers=["encoder.conv2"])
    trainer = Trainer(TrainConfig(**TINY), None, progress=False, model_transform=transform)
    assert [n for n, _ in trainer.shared] == ["encoder.conv1.weight", "encoder.conv1.bias",
                                              "encoder.fc.weight", "encoder.fc.bias"]
    copies = trainer.model.encoder.conv2.copies
    start = {t: copies[t].weight.detach().clone() for t in ("left", "right")}
    assert torch.equal(start["left"], start["right"])
    results = trainer.fit()
    moved = {t: copies[t].weight.detach() - start[t] for t in ("left", "right")}
    assert all(m.abs().sum() > 0 for m in moved.values())
    assert not torch.allclose(moved["left"], moved["right"])  # each copy, its own gradient
    assert results["probes"]["layer_conflict"]["layers"] == ["encoder.conv1", "encoder.fc"]


def test_without_transform_the_benchmark_model_is_used():
    trainer = Trainer(TrainConfig(**TINY), None, progress=False)
    assert len(trainer.shared) == 6
