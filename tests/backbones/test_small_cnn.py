from __future__ import annotations

import pytest
import torch
from mtlkit_plugins.backbones.small_cnn import SmallCNN

from mtlkit.errors import ConfigError
from mtlkit.plugins import get_plugin_manager


def test_output_size_and_registration():
    enc = get_plugin_manager().create("backbone", "small_cnn", in_channels=1, out_features=16)
    assert enc.out_features == 16
    assert enc(torch.zeros(2, 1, 20, 24)).shape == (2, 16)


def test_wrong_channels_and_bad_params():
    with pytest.raises(ValueError, match="3 input channels"):
        SmallCNN()(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ConfigError, match="width"):
        SmallCNN(width=0)
