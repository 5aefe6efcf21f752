"""Scope, bias and normalisation policies shared by every per-neuron strategy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mtlkit
from mtlkit.errors import ConfigError
from mtlkit.masking import MaskContext, MaskWarning, ParameterMask


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(32, 16)
        self.ln = nn.LayerNorm(16)


def _setup():
    torch.manual_seed(0)
    net = _Net()
    params = {f"encoder.{n}": p for n, p in net.named_parameters()}
    modules = {f"encoder.{n}": net.get_submodule(n.rsplit(".", 1)[0])
               for n, _ in net.named_parameters()}
    return params, modules


def _select(name, modules=True, **kw):
    params, mods = _setup()
    ctx = MaskContext(generator=torch.Generator().manual_seed(0),
                      modules=mods if modules else None)
    return params, mtlkit.get_mask(name, **kw).select(params, ctx)


@pytest.mark.parametrize("modules", [True, False])
def test_default_policy_trains_biases_and_freezes_norm_layers(modules):
    _, sel = _select("psn", modules=modules, k=2)
    assert sel["encoder.conv.bias"].all() and sel["encoder.fc.bias"].all()
    for name in ("encoder.bn.weight", "encoder.bn.bias", "encoder.ln.weight", "encoder.ln.bias"):
        assert not sel[name].any(), name


def test_policies_are_switchable():
    _, sel = _select("psn", k=2, bias="freeze", norm="train")
    assert not sel["encoder.conv.bias"].any() and not sel["encoder.fc.bias"].any()
    assert sel["encoder.bn.weight"].all() and sel["encoder.ln.bias"].all()


def test_include_limits_the_sparse_scope_and_the_rest_trains_fully():
    _, sel = _select("psn", k=2, include="encoder.fc.*")
    assert sel["encoder.conv.weight"].all()       # outside the scope: fully trainable
    assert sel["encoder.bn.weight"].all()
    assert int(sel["encoder.fc.weight"].sum()) == 16 * 2


def test_exclude_removes_from_scope():
    _, sel = _select("psn", k=1, exclude=["encoder.conv.*"])
    assert sel["encoder.conv.weight"].all()
    assert int(sel["encoder.fc.weight"].sum()) == 16


def test_a_pattern_matching_nothing_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"'encoder\.head\*'.*matches no shared parameter"):
        _select("psn", k=2, include="encoder.head*")


def test_a_mask_leaving_nothing_trainable_is_an_error():
    with pytest.warns(MaskWarning, match="no neurons"):
        params, sel = _select("psn", k=2, include=["encoder.bn.*", "encoder.ln.*"])
    # only the norm layers are in scope and frozen; everything else trains, so this is fine
    assert ParameterMask.from_selection(params, sel).trainable_count > 0
    only_norm = {n: p for n, p in params.items() if ".bn." in n}
    ctx = MaskContext(generator=torch.Generator())
    with pytest.warns(MaskWarning, match="no neurons"):
        selection = mtlkit.get_mask("psn", k=1).select(only_norm, ctx)
    with pytest.raises(ConfigError, match="no shared coordinate trainable"):
        ParameterMask.from_selection(only_norm, selection)


@pytest.mark.parametrize("name", ["psn", "random", "reverse", "global"])
def test_every_strategy_spends_the_same_budget(name):
    _, sel = _select(name, k=3)
    weights = int(sel["encoder.conv.weight"].sum() + sel["encoder.fc.weight"].sum())
    assert weights == 8 * 3 + 16 * 3


class _HomeMadeNorm(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))


def test_custom_norm_modules_are_recognised_and_builtin_slopes_are_not():
    net = nn.ModuleDict({"fc": nn.Linear(4, 4), "rms": _HomeMadeNorm(4), "act": nn.PReLU(4)})
    params = {f"encoder.{n}": p for n, p in net.named_parameters()}
    modules = {f"encoder.{n}": net.get_submodule(n.rsplit(".", 1)[0]) for n in
               dict(net.named_parameters())}
    ctx = MaskContext(generator=torch.Generator(), modules=modules)
    sel = mtlkit.get_mask("psn", k=1).select(params, ctx)
    assert not sel["encoder.rms.weight"].any()      # norm policy: frozen
    assert sel["encoder.act.weight"].all()          # PReLU slope: bias policy, trained
