"""MTAN: published size, shared vs task-specific parameters, per-task representation."""

from __future__ import annotations

import pytest
import torch
from mtlkit_plugins.backbones.mtan import MTANEncoder, build_mtan
from mtlkit_plugins.heads._dense import prediction_layer

from mtlkit.errors import ConfigError

TASKS = ("segmentation", "depth", "normal")
CHANNELS = {"segmentation": 13, "depth": 1, "normal": 3}


def tiny(scope: str = "task", tasks=TASKS):
    heads = {t: prediction_layer(4, CHANNELS[t]) for t in tasks}
    return build_mtan(heads, width=4, stages=3, attention_scope=scope)


def test_published_mtan_has_the_reference_size():
    # MTAN (Liu et al., CVPR 2019) is 1.77x the single-task SegNet (24,981,069)
    model = build_mtan({t: prediction_layer(64, CHANNELS[t]) for t in TASKS})
    n = sum(p.numel() for p in model.parameters())
    assert n == 44_229_073
    assert round(n / 24_981_069, 2) == 1.77


@pytest.mark.parametrize("scope", ["task", "shared"])
def test_every_parameter_is_shared_or_owned_by_exactly_one_task(scope):
    model = tiny(scope)
    shared = {id(p) for _, p in model.shared_named_parameters()}
    owned = [{id(p) for _, p in model.task_named_parameters(t)} for t in TASKS]
    everything = {id(p) for p in model.parameters()}
    assert shared.isdisjoint(set().union(*owned))
    assert sum(map(len, owned)) == len(set().union(*owned))
    assert shared | set().union(*owned) == everything
    attention = {id(p) for p in model.encoder.attention.parameters()}
    assert attention <= shared if scope == "shared" else attention.isdisjoint(shared)


def test_task_attention_gets_only_its_own_tasks_gradient():
    model = tiny()
    out = model(torch.randn(2, 3, 8, 12))
    assert {k: v.shape[1] for k, v in out.items()} == {"segmentation": 13, "depth": 1,
                                                       "normal": 3}
    out["depth"].sum().backward()
    for task in TASKS:
        grads = [p.grad for p in model.encoder.attention[task].parameters()]
        touched = any(g is not None and bool(g.abs().sum() > 0) for g in grads)
        assert touched == (task == "depth")


def test_representation_stacks_the_tasks_features():
    model = tiny().eval()
    x = torch.randn(1, 3, 8, 12)
    z = model.represent(x)
    assert z.shape == (1, 3 * 4, 8, 12)
    assert torch.allclose(model.heads_forward(z)["normal"], model(x)["normal"])


def test_odd_sizes_and_single_task():
    model = tiny(tasks=("depth",)).eval()
    assert model(torch.randn(1, 3, 7, 11))["depth"].shape == (1, 1, 7, 11)


def test_bad_parameters():
    with pytest.raises(ConfigError):
        tiny("encoder")
    with pytest.raises(ConfigError):
        MTANEncoder(["a", "a"])
