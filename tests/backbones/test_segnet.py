"""SegNet: the published size, any input size, registration."""

from __future__ import annotations

import pytest
import torch
from mtlkit_plugins.backbones.segnet import SegNet, deepest_pixels
from mtlkit_plugins.heads._dense import prediction_layer

from mtlkit.errors import ConfigError
from mtlkit.plugins import get_plugin_manager


def test_published_single_task_segnet_has_the_reference_parameter_count():
    # CAGrad's scripts print parameter counts relative to 24,981,069: the SegNet with one
    # 13-class prediction layer
    model = torch.nn.Sequential(SegNet(), prediction_layer(64, 13))
    assert sum(p.numel() for p in model.parameters()) == 24_981_069


@pytest.mark.parametrize("size", [(16, 32), (9, 13), (1, 1)])
def test_output_keeps_the_input_resolution(size):
    net = SegNet(width=4, stages=3).eval()
    out = net(torch.randn(2, 3, *size))
    assert out.shape == (2, net.out_channels, *size)


def test_deepest_pixels():
    assert deepest_pixels((288, 384), 5) == 18 * 24
    assert deepest_pixels((8, 16), 5) == 1
    assert deepest_pixels((8, 16), 4) == 2


@pytest.mark.parametrize("params", [{"width": 0}, {"stages": 6}, {"stages": 0}])
def test_bad_parameters(params):
    with pytest.raises(ConfigError):
        SegNet(**params)


def test_registered():
    net = get_plugin_manager().create("backbone", "segnet", width=2, stages=1)
    assert isinstance(net, SegNet)
