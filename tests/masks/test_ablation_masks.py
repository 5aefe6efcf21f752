"""The paper's ablation arms (random, reverse, global) and gradient-based selection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mtlkit
from mtlkit.config import TrainConfig
from mtlkit.errors import ConfigError
from mtlkit.masking import MaskContext
from mtlkit.trainer import Trainer


def _ctx(seed=0, grads=None):
    return MaskContext(generator=torch.Generator().manual_seed(seed),
                       gradient_magnitudes=None if grads is None else (lambda n: grads))


W = nn.Parameter(torch.tensor([[0.1, -3.0, 2.0, 0.5], [4.0, 0.0, -0.2, -5.0]]))


def test_reverse_keeps_the_lowest_magnitudes_per_neuron():
    sel = mtlkit.get_mask("reverse", k=2).select({"w": W}, _ctx())["w"]
    assert sel.tolist() == [[True, False, False, True], [False, True, True, False]]


def test_random_is_k_per_neuron_and_reproducible_per_seed():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(20, 50))
    a = mtlkit.get_mask("random", k=7).select({"w": w}, _ctx(1))["w"]
    b = mtlkit.get_mask("random", k=7).select({"w": w}, _ctx(1))["w"]
    c = mtlkit.get_mask("random", k=7).select({"w": w}, _ctx(2))["w"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.sum(1).tolist() == [7] * 20
    psn = mtlkit.get_mask("psn", k=7).select({"w": w}, _ctx())["w"]
    assert not torch.equal(a, psn)


def test_global_takes_the_largest_magnitudes_over_all_layers():
    big = nn.Parameter(torch.full((2, 3), 10.0) + torch.arange(6.0).reshape(2, 3))
    small = nn.Parameter(torch.full((2, 3), 0.1))
    sel = mtlkit.get_mask("global", k=1).select({"a": big, "b": small}, _ctx())
    # PSN's budget for k=1 is 4 weights; globally they all come from the large layer
    assert int(sel["a"].sum()) == 4 and int(sel["b"].sum()) == 0
    assert sel["a"].tolist() == [[False, False, True], [True, True, True]]


def test_gradient_selection_uses_accumulated_gradient_magnitudes():
    grads = {"w": torch.tensor([[9.0, 0.0, 0.0, 1.0], [0.0, 2.0, 3.0, 0.0]])}
    sel = mtlkit.get_mask("gradient", k=2).select({"w": W}, _ctx(grads=grads))["w"]
    assert sel.tolist() == [[True, False, False, True], [False, True, True, False]]


def test_gradient_selection_needs_the_trainer():
    with pytest.raises(ConfigError, match="warm-up gradients"):
        mtlkit.get_mask("gradient", k=2).select({"w": W}, _ctx())


@pytest.mark.parametrize("params", [{"warmup_batches": 0}, {"reselect_every": 0},
                                    {"reselect_every": 2.5}])
def test_gradient_bad_input(params):
    with pytest.raises(ConfigError):
        mtlkit.get_mask("gradient", **params)


def test_reselection_changes_the_mask_during_training_and_keeps_the_density():
    cfg = TrainConfig(benchmark_params={"n_train": 256, "n_val": 64, "n_test": 64},
                      mask="gradient", density=0.3, mask_params={"reselect_every": 3,
                                                                 "warmup_batches": 2},
                      max_steps=4, epochs=1, batch_size=32, threads=1, checkpoint=False,
                      probes=[])
    trainer = Trainer(cfg, None, progress=False)
    first = {n: m.clone() for n, m in trainer.mask.masks.items()}
    trainer.fit()
    assert any(not torch.equal(first[n], m) for n, m in trainer.mask.masks.items())
    assert abs(trainer.mask.trainable_fraction - 0.3) <= 0.02


def test_gradient_warm_up_leaves_running_stats_and_rng_as_they_were():
    cfg = TrainConfig(benchmark_params={"n_train": 128, "n_val": 32, "n_test": 32},
                      mask="psn", density=0.3, batch_size=32, threads=1, checkpoint=False)
    trainer = Trainer(cfg, None, progress=False)
    # give the model state the warm-up could disturb: BatchNorm statistics and dropout's RNG
    bn = nn.BatchNorm1d(50)
    trainer.model.encoder = nn.Sequential(trainer.model.encoder, bn, nn.Dropout(0.5))
    rng = torch.get_rng_state()
    grads = trainer._gradient_magnitudes(2)
    assert torch.equal(bn.running_mean, torch.zeros(50)) and int(bn.num_batches_tracked) == 0
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(g.abs().sum() > 0 for g in grads.values())
