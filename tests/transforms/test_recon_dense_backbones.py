"""Recon's transform on the papers' backbones (SegNet, MTAN, and ResNet-18 when torchvision can
import): same outputs at initialisation in train and eval mode, and parameters grow by exactly
(T - 1) x the chosen layers' sizes."""

from __future__ import annotations

import copy

import pytest
import torch
from mtlkit_plugins.backbones.mtan import build_mtan
from mtlkit_plugins.backbones.segnet import SegNet
from mtlkit_plugins.heads._dense import prediction_layer
from mtlkit_plugins.transforms.recon import branch_layers, branchable_layers

import mtlkit
from mtlkit.errors import ConfigError
from mtlkit.models import MultiTaskModel
from mtlkit.trainer import count_parameters

CHANNELS = {"segmentation": 13, "depth": 1, "normal": 3}
X = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(0))


def segnet_model() -> MultiTaskModel:
    encoder = SegNet(in_channels=3, width=4, stages=3)
    return MultiTaskModel(encoder, {t: prediction_layer(encoder.out_channels, c)
                                    for t, c in CHANNELS.items()})


def mtan_model() -> MultiTaskModel:
    return build_mtan({t: prediction_layer(4, c) for t, c in CHANNELS.items()},
                      width=4, stages=3)


def resnet_model() -> MultiTaskModel:
    try:
        encoder = mtlkit.get_backbone("resnet18")
    except ConfigError as exc:  # torchvision missing or not importable on this machine
        pytest.skip(str(exc))
    return MultiTaskModel(encoder, {t: torch.nn.Linear(encoder.out_features, 2)
                                    for t in CHANNELS})


def pick(model: MultiTaskModel) -> list[str]:
    """A conv, a normalisation layer and the last branchable layer, spread over the encoder."""
    names = list(branchable_layers(model))
    convs = [n for n in names if isinstance(model.get_submodule(n), torch.nn.Conv2d)]
    norms = [n for n in names if isinstance(model.get_submodule(n), torch.nn.BatchNorm2d)]
    return sorted({convs[len(convs) // 2], norms[0], names[-1]}, key=names.index)


@pytest.mark.parametrize("make", [segnet_model, mtan_model, resnet_model],
                         ids=["segnet", "mtan", "resnet18"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_same_outputs_and_exact_parameter_growth(make, train):
    torch.manual_seed(0)
    model = make()
    layers = pick(model)
    sizes = branchable_layers(model)
    recon = branch_layers(copy.deepcopy(model), layers)
    model.train(train)
    recon.train(train)
    with torch.no_grad():
        expected, got = model(X), recon(X)
    assert expected.keys() == got.keys()
    for task in expected:
        torch.testing.assert_close(got[task], expected[task], atol=1e-5, rtol=1e-4)
    growth = (len(CHANNELS) - 1) * sum(sizes[n] for n in layers)
    assert count_parameters(recon) - count_parameters(model) == growth
