"""A small plain-torch CNN encoder, the CPU default of the image benchmarks (CelebA, CLEVR,
SmallNORB) when torchvision is not installed or a pre-trained model is too slow.

Four blocks conv3x3 - BatchNorm - ReLU - maxpool 2 (widths w, 2w, 4w, 8w), global average
pooling, then fc -> ``out_features`` - ReLU. About 0.4 M parameters at the default width 32,
and about 12x cheaper per image at 64x64 than a ResNet-18 (11 M) at the papers' 224x224
(measured on one CPU thread; see docs/backbones.md).
It is this project's choice, not a paper's model; the papers' models are ``resnet18`` (Recon),
``swin_*`` and ``vit_b_16`` (ST).
"""

from __future__ import annotations

import torch
from torch import nn

from mtlkit import hookimpl
from mtlkit.errors import ConfigError


class SmallCNN(nn.Module):
    """Shared conv encoder; any input size >= 16x16; ``out_features`` (default 128)."""

    def __init__(self, in_channels: int = 3, width: int = 32, out_features: int = 128) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("width", width),
                        ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"invalid {name}={v!r}: must be an integer >= 1")
        layers: list[nn.Module] = []
        c = in_channels
        for mult in (1, 2, 4, 8):
            layers += [nn.Conv2d(c, width * mult, 3, padding=1, bias=False),
                       nn.BatchNorm2d(width * mult), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c = width * mult
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, out_features)
        self.in_channels = in_channels
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"SmallCNN expects {self.in_channels} input channels, "
                             f"got {x.shape[1]}")
        z = self.features(x).mean(dim=(2, 3))
        return torch.relu(self.fc(z))


@hookimpl
def register_backbones(register):
    register("small_cnn", SmallCNN)
