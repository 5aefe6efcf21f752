"""The trainer's gradient paths: loop, batched, gramian, representation, losses."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from mtlkit import hookimpl
from mtlkit.aggregation import Aggregator, GramianWeighting
from mtlkit.config import TrainConfig
from mtlkit.errors import ConfigError, GradientError
from mtlkit.plugins import get_plugin_manager
from mtlkit.trainer import Trainer

SMALL = {"n_train": 64, "n_val": 32, "n_test": 32}


class Summed(Aggregator):
    """A method that needs the full Jacobian (the generic path)."""

    def aggregate(self, J, context):
        return J.sum(dim=0)


class Skewed(GramianWeighting):
    """w_k proportional to 1 / ||g_k|| (a non-trivial function of G only)."""

    def weights(self, G, context):
        w = 1 / torch.sqrt(torch.diagonal(G))
        return w / w.sum()


class MinNormTwo(GramianWeighting):
    """Closed-form MGDA for K = 2, on representation gradients (MGDA-UB)."""

    gradient_level: ClassVar[str] = "representation"
    seen: ClassVar[list[torch.Tensor]] = []

    def weights(self, G, context):
        MinNormTwo.seen.append(G.clone())
        a = ((G[1, 1] - G[0, 1]) / (G[0, 0] + G[1, 1] - 2 * G[0, 1])).clamp(0, 1)
        return torch.stack([a, 1 - a])


class Plugin:
    @hookimpl
    def register_aggregators(self, register):
        register("t_skewed", Skewed)
        register("t_summed", Summed)
        register("t_minnorm_ub", MinNormTwo)


@pytest.fixture(autouse=True)
def plugins():  # per test: conftest gives every test a freshly loaded registry
    with get_plugin_manager().temporary(Plugin(), "test_trainer_gradients"):
        yield


def make(**kw: Any) -> Trainer:
    values = {"benchmark_params": SMALL, "batch_size": 16, "epochs": 1, "probes": [],
              "checkpoint": False, "optimizer": "sgd", "lr": 0.1, **kw}
    return Trainer(TrainConfig(**values), None, progress=False)


def batch(trainer: Trainer):
    return next(iter(trainer._train_batches(torch.Generator().manual_seed(0))))


def reference_J(trainer: Trainer, x, y) -> torch.Tensor:
    """Naive per-task gradients on the trainable coordinates of the shared parameters."""
    rows = []
    for k in range(len(trainer.task_names)):
        losses = trainer._losses(trainer.model(x), y)
        grads = torch.autograd.grad(losses[k], [p for _, p in trainer.shared])
        rows.append(torch.cat([g[trainer.mask.masks[n]] for (n, _), g in
                               zip(trainer.shared, grads)]))
    return torch.stack(rows)


def shared_grad(trainer: Trainer) -> torch.Tensor:
    parts = []
    for n, p in trainer.shared:
        m = trainer.mask.masks[n]
        assert p.grad is not None or not bool(m.any()), f"{n} has trainable coords, no grad"
        parts.append(p.grad[m] if p.grad is not None else torch.zeros(0))
    return torch.cat(parts)


def sparse(trainer: Trainer) -> None:
    """Freeze a random 70% of the shared coordinates and all of the last shared bias."""
    from mtlkit.bench import random_neuron_mask

    mask = random_neuron_mask(dict(trainer.shared), 0.3, torch.Generator().manual_seed(0))
    name = trainer.shared[-1][0]
    mask.masks[name] = torch.zeros_like(mask.masks[name])
    trainer.set_mask(mask)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(("aggregator", "jacobian"), [
    ("mean", "loop"), ("mean", "gramian"), ("t_summed", "loop"), ("t_summed", "batched"),
    ("t_summed", "representation"), ("t_skewed", "loop"), ("t_skewed", "batched"),
    ("t_skewed", "gramian"),
])
def test_update_written_to_grad_matches_aggregator(aggregator, jacobian, masked):
    trainer = make(aggregator=aggregator, jacobian=jacobian)
    if masked:
        sparse(trainer)
    x, y = batch(trainer)
    J = reference_J(trainer, x, y)
    expected = trainer.aggregator(J, task_names=trainer.task_names)
    before = {n: p.detach().clone() for n, p in trainer.shared}
    assert trainer.train_step(x, y) is not None
    torch.testing.assert_close(shared_grad(trainer), expected, rtol=1e-4, atol=1e-6)
    for n, p in trainer.shared:
        frozen = ~trainer.mask.masks[n]
        if p.grad is not None:
            assert bool((p.grad[frozen] == 0).all())
        assert torch.equal(p.detach()[frozen], before[n][frozen])


def test_representation_level_aggregator_gets_representation_gramian():
    MinNormTwo.seen.clear()
    trainer = make(aggregator="t_minnorm_ub")  # jacobian left at loop: the class decides
    assert trainer.gradient_path == "representation"
    x, y = batch(trainer)
    z = trainer.model.represent(x).detach().requires_grad_(True)
    outputs = trainer.model.heads_forward(z)
    losses = trainer._losses(outputs, y)
    Z = torch.stack([torch.autograd.grad(losses[k], z, retain_graph=True)[0].reshape(-1)
                     for k in range(2)])
    trainer.train_step(x, y)
    torch.testing.assert_close(MinNormTwo.seen[-1], Z @ Z.T, rtol=1e-4, atol=1e-7)
    # the min-norm combination of the representation gradients is what was back-propagated
    w = MinNormTwo().weights(Z @ Z.T, {})
    J = reference_J(make(aggregator="mean"), x, y)  # same seed: same initial weights
    torch.testing.assert_close(shared_grad(trainer), w @ J, rtol=1e-4, atol=1e-6)


def test_gramian_mode_rejects_jacobian_aggregators_by_name():
    with pytest.raises(ConfigError, match=r"jacobian='gramian'.*'t_summed'"):
        make(aggregator="t_summed", jacobian="gramian")


@pytest.mark.parametrize("jacobian", ["loop", "batched", "gramian", "representation"])
def test_probes_observe_full_gradients_in_every_mode(jacobian):
    trainer = make(aggregator="t_skewed", jacobian=jacobian, probes=["cosine"], max_steps=3)
    sparse(trainer)
    results = trainer.fit()
    assert results["steps"] == 3
    assert len(trainer.step_rows) == 3
    assert 0 <= results["conflict"]["incidence_all"] <= 1


def test_single_task_gets_its_own_gradient():
    trainer = make(aggregator="t_skewed", tasks=["left"])
    x, y = batch(trainer)
    J = reference_J(trainer, x, y)
    trainer.train_step(x, y)
    torch.testing.assert_close(shared_grad(trainer), J[0], rtol=1e-4, atol=1e-6)


def test_all_zero_gramian_gives_zero_update():
    from mtlkit.engine.paths import JacobianPath

    trainer = make(aggregator="t_skewed")
    w = JacobianPath(trainer.mtl).weights(torch.zeros(2, 2), {})
    assert torch.equal(w, torch.zeros(2))


class NanGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


class PoisonBackward(nn.Module):
    def forward(self, x):
        return NanGrad.apply(x)


@pytest.mark.parametrize(("aggregator", "jacobian"), [
    ("mean", "loop"), ("t_summed", "loop"), ("t_skewed", "loop"), ("t_skewed", "gramian"),
    ("t_skewed", "representation"), ("t_summed", "representation")])
def test_nonfinite_task_gradient_is_named_or_skipped(aggregator, jacobian):
    trainer = make(aggregator=aggregator, jacobian=jacobian)
    trainer.model.heads["right"] = nn.Sequential(PoisonBackward(), trainer.model.heads["right"])
    x, y = batch(trainer)
    with pytest.raises(GradientError, match="right"):
        trainer.train_step(x, y)
    skipping = make(aggregator=aggregator, jacobian=jacobian, nonfinite="skip")
    skipping.model.heads["right"] = nn.Sequential(PoisonBackward(),
                                                  skipping.model.heads["right"])
    before = [p.detach().clone() for p in skipping.model.parameters()]
    assert skipping.train_step(x, y) is None
    assert skipping.skipped_steps == 1
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, skipping.model.parameters()))


def test_cli_names_both_sides_of_an_incompatible_combination(capsys, tmp_path):
    from mtlkit.cli import main

    rc = main(["train", "--aggregator", "t_summed", "--jacobian", "gramian", "--max-steps", "1",
               "--benchmark-param", "n_train=32", "--quiet", "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "jacobian='gramian'" in err and "'t_summed'" in err and "Traceback" not in err
