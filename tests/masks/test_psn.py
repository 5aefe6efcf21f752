"""PSN: per-neuron top-K by |w|, density -> K, reported fraction, bad input."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import mtlkit
from mtlkit.errors import ConfigError
from mtlkit.masking import MaskContext, MaskWarning, ParameterMask


def _ctx(modules=None):
    return MaskContext(generator=torch.Generator().manual_seed(0), modules=modules)


def _lenet_like():
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Conv2d(1, 10, 5), nn.Conv2d(10, 20, 5), nn.Flatten(), nn.Linear(320, 50))
    params = {f"encoder.{n}": p for n, p in enc.named_parameters()}
    modules = {f"encoder.{n}": enc.get_submodule(n.rsplit(".", 1)[0]) for n in
               dict(enc.named_parameters())}
    return params, modules


def test_linear_rows_keep_exactly_the_top_k_magnitudes():
    w = nn.Parameter(torch.tensor([[0.1, -3.0, 2.0, 0.5], [4.0, 0.0, -0.2, -5.0]]))
    sel = mtlkit.get_mask("psn", k=2).select({"fc.weight": w}, _ctx())
    assert sel["fc.weight"].tolist() == [[False, True, True, False], [True, False, False, True]]


def test_conv_channels_are_flattened_over_in_kh_kw():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3)
    sel = mtlkit.get_mask("psn", k=5).select({"c.weight": conv.weight}, _ctx())["c.weight"]
    assert sel.shape == conv.weight.shape
    rows = conv.weight.detach().abs().reshape(4, -1)
    for r in range(4):
        kept = rows[r][sel.reshape(4, -1)[r]]
        dropped = rows[r][~sel.reshape(4, -1)[r]]
        assert kept.numel() == 5 and kept.min() > dropped.max()


def test_transposed_conv_neurons_are_output_channels():
    conv = nn.ConvTranspose2d(6, 2, 3)  # weight [in=6, out=2, 3, 3]
    sel = mtlkit.get_mask("psn", k=4).select({"t.weight": conv.weight},
                                             _ctx({"t.weight": conv}))["t.weight"]
    per_out_channel = sel.transpose(0, 1).reshape(2, -1).sum(1)
    assert per_out_channel.tolist() == [4, 4]


@pytest.mark.parametrize("density", [0.1, 0.3, 0.6, 0.9])
def test_density_is_met_within_two_points(density):
    params, modules = _lenet_like()
    strategy = mtlkit.get_mask("psn", density=density)
    mask = ParameterMask.from_selection(params, strategy.select(params, _ctx(modules)))
    assert abs(mask.trainable_fraction - density) <= 0.02
    assert strategy.describe()["real_density"] == pytest.approx(mask.trainable_fraction)
    k = strategy.describe()["k"]
    # K is one absolute count for every neuron (min(K, fan_in))
    assert int(mask.masks["encoder.3.weight"].sum(1).max()) == min(k, 320)
    assert int(mask.masks["encoder.0.weight"].reshape(10, -1).sum(1).min()) == min(k, 25)


def test_density_one_is_dense_and_default_is_the_papers_random_init_rule():
    params, modules = _lenet_like()
    dense = mtlkit.get_mask("psn", density=1.0).select(params, _ctx(modules))
    assert all(bool(m.all()) for m in dense.values())
    default = mtlkit.get_mask("psn")
    assert default.density == 0.6


def test_k_larger_than_every_fan_in_is_clamped_with_a_warning():
    params, modules = _lenet_like()
    strategy = mtlkit.get_mask("psn", k=10_000)
    with pytest.warns(MaskWarning, match="exceeds every fan-in"):
        sel = strategy.select(params, _ctx(modules))
    assert strategy.describe()["k"] == 320
    assert all(bool(m.all()) for m in sel.values())


def test_unreachable_density_warns_with_the_real_fraction():
    params, modules = _lenet_like()
    # the convolutions (5,270 coordinates) are out of scope and train fully: 10% is unreachable
    with pytest.warns(MaskWarning, match=r"trainable fraction of 0\.2"):
        mtlkit.get_mask("psn", density=0.1, include="encoder.3.*").select(params, _ctx(modules))


def test_reachable_density_does_not_warn():
    params, modules = _lenet_like()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mtlkit.get_mask("psn", density=0.5).select(params, _ctx(modules))


@pytest.mark.parametrize("params, match", [
    ({"density": 0}, "density"), ({"density": 1.5}, "density"), ({"density": -0.1}, "density"),
    ({"k": 0}, "k"), ({"density": 0.5, "k": 3}, "either"), ({"bias": "maybe"}, "bias"),
    ({"norm": 1}, "norm"), ({"include": 3}, "include"),
])
def test_bad_input_is_one_clear_error(params, match):
    with pytest.raises(ConfigError, match=match):
        mtlkit.get_mask("psn", **params)
