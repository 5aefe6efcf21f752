"""One test per hook: a plugin implementing it is found through the public API.

``test_every_hook_has_a_test`` and ``test_every_hook_is_documented`` keep this true as hooks
are added (the datasette pattern).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import mtlkit
from mtlkit import hookimpl, hookspecs
from mtlkit.aggregation import Aggregator
from mtlkit.benchmarks import Benchmark, InMemoryDataset, Splits, Task
from mtlkit.masking import MaskStrategy
from mtlkit.models import MultiTaskModel
from mtlkit.plugins import KINDS, get_plugin_manager
from mtlkit.probing import ConflictProbe

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
HOOKS = sorted(n for n, f in vars(hookspecs).items()
               if n.startswith("register_") and callable(f) and hasattr(f, "mtlkit_spec"))


def test_every_kind_maps_to_a_hook():
    assert sorted(KINDS.values()) == HOOKS


def test_every_hook_has_a_test():
    tests = {name for name in globals() if name.startswith("test_hook_")}
    missing = [h for h in HOOKS if f"test_hook_{h}" not in tests]
    assert not missing, f"hooks without a test: {missing}"


def test_every_hook_is_documented():
    text = DOCS.read_text(encoding="utf-8")
    for hook in HOOKS:
        args = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
        assert re.search(rf"^#+ `{hook}\({re.escape(args)}\)`", text, re.M), (
            f"docs/plugins.md has no heading `{hook}({args})`")


class Negate(Aggregator):
    def aggregate(self, J, context):
        return -J.mean(0)


def test_hook_register_aggregators():
    class P:
        @hookimpl
        def register_aggregators(self, register):
            register("negate", Negate)

    with get_plugin_manager().temporary(P()):
        agg = mtlkit.get_aggregator("negate")
        J = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
        assert torch.equal(agg(J), torch.tensor([-2.0, -3.0]))


def test_hook_register_mask_strategies():
    class FirstHalf(MaskStrategy):
        def select(self, params, context):
            return {n: torch.arange(p.numel()).reshape(p.shape) < p.numel() // 2
                    for n, p in params.items()}

    class P:
        @hookimpl
        def register_mask_strategies(self, register):
            register("first_half", FirstHalf)

    with get_plugin_manager().temporary(P()):
        strategy = mtlkit.get_mask("first_half")
        params = {"w": nn.Parameter(torch.zeros(4, 2))}
        sel = strategy.select(params, None)
        assert int(sel["w"].sum()) == 4


def test_hook_register_conflict_probes():
    class Count(ConflictProbe):
        def __init__(self):
            self.n = 0

        def observe(self, obs):
            self.n += 1
            return {"n": self.n}

    class P:
        @hookimpl
        def register_conflict_probes(self, register):
            register("count", Count)

    with get_plugin_manager().temporary(P()):
        assert mtlkit.get_probe("count").observe(None) == {"n": 1}


def test_hook_register_task_heads():
    head_cls = type(mtlkit.get_head("classification", num_classes=2))

    class P:
        @hookimpl
        def register_task_heads(self, register):
            register("binary_via_plugin", lambda: head_cls(num_classes=2))

    with get_plugin_manager().temporary(P()):
        head = mtlkit.get_head("binary_via_plugin")
        assert head.build(3)(torch.zeros(1, 3)).shape == (1, 2)


def test_hook_register_backbones():
    class P:
        @hookimpl
        def register_backbones(self, register):
            register("tiny_mlp", lambda width=4: nn.Sequential(nn.Flatten(), nn.Linear(4, width)))

    with get_plugin_manager().temporary(P()):
        net = mtlkit.get_backbone("tiny_mlp", width=3)
        assert net(torch.zeros(2, 2, 2)).shape == (2, 3)


class Toy(Benchmark):
    """Two regression-free classification tasks on random data (hook test only)."""

    def __init__(self, data_root=None, seed=0):
        self.seed = seed

    @property
    def tasks(self):
        return [Task(t, mtlkit.get_head("classification", num_classes=2)) for t in ("a", "b")]

    def splits(self):
        g = torch.Generator().manual_seed(self.seed)
        x = torch.randn(32, 4, generator=g)
        ds = InMemoryDataset(x, {"a": (x[:, 0] > 0).long(), "b": (x[:, 1] > 0).long()})
        return Splits(ds, ds, ds)

    def build_model(self, tasks=None):
        heads = {t.name: t.head.build(8) for t in self.tasks if tasks is None or t.name in tasks}
        return MultiTaskModel(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), heads)


def test_hook_register_benchmarks(tmp_path):
    class P:
        @hookimpl
        def register_benchmarks(self, register):
            register("toy", Toy)

    from mtlkit.config import TrainConfig
    from mtlkit.trainer import Trainer

    with get_plugin_manager().temporary(P()):
        results = Trainer(TrainConfig(benchmark="toy", epochs=2, batch_size=8, lr=0.05),
                          tmp_path, progress=False).fit()
    assert set(results["tasks"]) == {"a", "b"}
    assert (tmp_path / "results.json").is_file()


def test_hook_register_model_transforms():
    def add_noise_free_copy(model):
        return model

    class P:
        @hookimpl
        def register_model_transforms(self, register):
            register("identity", lambda: add_noise_free_copy)

    with get_plugin_manager().temporary(P()):
        transform = mtlkit.get_transform("identity")
        model = Toy().build_model()
        assert transform(model) is model


@pytest.mark.parametrize("hook", HOOKS)
def test_hookspec_is_typed_and_documented(hook):
    spec = getattr(hookspecs, hook)
    assert spec.__doc__ and ":param register:" in spec.__doc__
    assert "register" in inspect.signature(spec).parameters
