"""The training loop: determinism, gradients, frozen coordinates, resume, non-finite policy."""

from __future__ import annotations

import json

import attrs
import pytest
import torch

from mtlkit import hookimpl
from mtlkit.aggregation import Aggregator
from mtlkit.config import TrainConfig
from mtlkit.errors import GradientError
from mtlkit.masking import MaskStrategy
from mtlkit.plugins import get_plugin_manager
from mtlkit.trainer import Trainer

SMALL = {"n_train": 1024, "n_val": 256, "n_test": 256}


def config(**kw):
    base = dict(benchmark="multi_mnist", benchmark_params=SMALL, epochs=2, threads=1)
    base.update(kw)
    return TrainConfig(**base)


class EveryOther(MaskStrategy):
    """Trainable = even flat positions (a deterministic 50% mask for tests)."""

    def select(self, params, context):
        return {n: (torch.arange(p.numel()) % 2 == 0).reshape(p.shape) for n, p in params.items()}


class NaNAfter(Aggregator):
    """Mean, but NaN from step ``after`` on."""

    def __init__(self, after: int = 1):
        self.after = after

    def aggregate(self, J, context):
        d = J.mean(0)
        return d * float("nan") if context["step"] >= self.after else d


class TestPlugins:
    @hookimpl
    def register_mask_strategies(self, register):
        register("every_other", EveryOther)

    @hookimpl
    def register_aggregators(self, register):
        register("nan_after", NaNAfter)


@pytest.fixture
def extra_plugins():
    with get_plugin_manager().temporary(TestPlugins(), name="test-plugins"):
        yield


def test_same_seed_same_numbers(tmp_path):
    a = Trainer(config(seed=5), tmp_path / "a", progress=False).fit()
    b = Trainer(config(seed=5), tmp_path / "b", progress=False).fit()
    c = Trainer(config(seed=6), tmp_path / "c", progress=False).fit()
    assert a["tasks"] == b["tasks"] and a["history"] == b["history"]
    assert a["conflict"] == b["conflict"]
    assert a["history"] != c["history"]


def test_results_json_contract(tmp_path):
    Trainer(config(max_steps=3), tmp_path, progress=False).fit()
    r = json.loads((tmp_path / "results.json").read_text())
    for key in ("benchmark", "aggregator", "mask", "seed", "trainable_fraction", "tasks",
                "delta_m", "conflict", "steps", "wall_s"):
        assert key in r
    assert r["steps"] == 3 and r["trainable_fraction"] == 1.0
    assert set(r["tasks"]) == {"left", "right"} and 0 <= r["tasks"]["left"]["accuracy"] <= 1
    for key in ("incidence_all", "incidence_last_half", "incidence_trainable_all",
                "incidence_trainable_last_half"):
        assert 0 <= r["conflict"][key] <= 1
    assert r["delta_m"] is None  # no baselines for the offline variant
    assert (tmp_path / "epochs.csv").is_file() and (tmp_path / "steps.csv").is_file()


def test_step_writes_mean_gradient_and_own_head_gradients():
    trainer = Trainer(config(max_steps=1, probes=[]), None, progress=False)
    x, y = next(trainer._train_batches(torch.Generator().manual_seed(0)))
    model = trainer.model
    losses = trainer._losses(model(x), y)
    shared = [p for _, p in trainer.shared]
    expected_shared = torch.autograd.grad(losses.mean(), shared, retain_graph=True)
    left_head = list(model.heads["left"].parameters())
    expected_left = torch.autograd.grad(losses[0], left_head)
    trainer.optimizer.step = lambda: None  # look at the gradients, do not step
    trainer.train_step(x, y)
    for p, g in zip(shared, expected_shared):
        torch.testing.assert_close(p.grad, g)
    for p, g in zip(left_head, expected_left):  # the head gets its own task's gradient
        torch.testing.assert_close(p.grad, g)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_frozen_coordinates_bit_identical(extra_plugins, optimizer):
    cfg = config(mask="every_other", optimizer=optimizer, momentum=0.9, weight_decay=0.1,
                 max_steps=6, lr=0.01)
    trainer = Trainer(cfg, None, progress=False)
    before = {n: p.detach().clone() for n, p in trainer.shared}
    trainer.fit()
    assert trainer.mask.trainable_fraction == pytest.approx(0.5, abs=0.01)
    for name, p in trainer.shared:
        m = trainer.mask.masks[name]
        assert torch.equal(p.detach()[~m], before[name][~m])  # bit-identical
        assert not torch.equal(p.detach()[m], before[name][m])  # the rest trained


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    full = Trainer(config(epochs=3), tmp_path / "full", progress=False).fit()

    class Stop(Exception):
        pass

    def stop_after_two(record, trainer):
        if record["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        Trainer(config(epochs=3), tmp_path / "cut", progress=False,
                on_epoch_end=stop_after_two).fit()
    resumed = Trainer(config(epochs=3), tmp_path / "cut", progress=False).fit(resume=True)
    assert resumed["tasks"] == full["tasks"]
    assert resumed["history"] == full["history"]
    assert resumed["conflict"] == full["conflict"]


def test_nonfinite_update_raises_and_names_step(extra_plugins):
    trainer = Trainer(config(aggregator="nan_after", max_steps=4), None, progress=False)
    with pytest.raises(GradientError, match="step 1: aggregator 'nan_after' returned a "
                                            "non-finite update"):
        trainer.fit()


def test_nonfinite_skip_policy_leaves_parameters_untouched(extra_plugins):
    cfg = config(aggregator="nan_after", aggregator_params={"after": 0}, max_steps=3,
                 nonfinite="skip", max_skipped_fraction=1.0)
    trainer = Trainer(cfg, None, progress=False)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    results = trainer.fit()
    assert results["skipped_steps"] == 3
    for p, b in zip(trainer.model.parameters(), before):
        assert torch.equal(p.detach(), b)


def test_nan_loss_names_task(monkeypatch):
    trainer = Trainer(config(max_steps=2), None, progress=False)
    real = trainer._task_losses

    def poisoned(outputs, targets):
        losses = real(outputs, targets)
        losses["right"] = losses["right"] * float("nan")
        return losses

    monkeypatch.setattr(trainer, "_task_losses", poisoned)
    with pytest.raises(GradientError, match="non-finite loss for task\\(s\\) right"):
        trainer.fit()


def test_stl_subset_trains_one_head():
    trainer = Trainer(attrs.evolve(config(max_steps=2), tasks=["right"]), None, progress=False)
    assert trainer.model.task_names == ["right"]
    results = trainer.fit()
    assert set(results["tasks"]) == {"right"}


def test_multi_mnist_learns(tmp_path):
    """A short real run learns both tasks well above chance (10%)."""
    results = Trainer(config(epochs=2, batch_size=128,
                             benchmark_params={"n_train": 8000, "n_val": 500, "n_test": 1000}),
                      tmp_path, progress=False).fit()
    assert results["tasks"]["left"]["accuracy"] > 0.5
    assert results["tasks"]["right"]["accuracy"] > 0.5
