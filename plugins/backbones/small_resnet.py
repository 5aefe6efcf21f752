"""A compact residual encoder in plain torch: the CIFAR ResNet family of He et al. (CVPR 2016,
"Deep Residual Learning for Image Recognition", arXiv 1512.03385, §4.2), no torchvision needed.

Layout (He et al.'s 6n+2 CIFAR networks, with ``blocks`` = n per stage): conv3x3 stem (stride
``stem_stride``) - BatchNorm - ReLU, three stages of ``blocks`` basic blocks (two conv3x3 -
BatchNorm, identity shortcut or a 1x1 stride-2 projection when the shape changes) with widths
w, 2w, 4w, the second and third stage halving the resolution, then global average pooling and
fc -> ``out_features`` - ReLU. ``blocks=1`` is ResNet-8, ``blocks=3`` ResNet-20 (0.27 M
parameters at w=16).

Why it exists: the sparse-training paper's claims (arXiv 2411.18615, Tab. 1 and §4.4) are about
fine-tuning a *pre-trained residual encoder*; a LeNet is too shallow to have the depth profile of
conflict that paper and Recon describe, and a torchvision ResNet-18 at 224x224 costs seconds per
step on one CPU thread. ``stem_stride=2`` (this project's option, not He et al.'s) runs the first
stage at half resolution, ~4x cheaper on 28x28 inputs, which keeps a full sparse-vs-dense table
(docs/sparse-vs-dense.md) within minutes per seed on a CPU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mtlkit import hookimpl
from mtlkit.errors import ConfigError


class BasicBlock(nn.Module):
    """Two conv3x3-BN with a residual connection (He et al. Fig. 2); projection shortcut
    (1x1 conv + BN, their option B) when stride or width change."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """CIFAR-style ResNet encoder; any input >= 8x8; outputs ``out_features`` (default 64)."""

    def __init__(self, in_channels: int = 1, width: int = 16, blocks: int = 1,
                 stem_stride: int = 1, out_features: int = 64) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("width", width), ("blocks", blocks),
                        ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"invalid {name}={v!r}: must be an integer >= 1")
        if stem_stride not in (1, 2):
            raise ConfigError(f"invalid stem_stride={stem_stride!r}: must be 1 or 2")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        stages: list[nn.Module] = []
        c = width
        for i, mult in enumerate((1, 2, 4)):
            layers = []
            for j in range(blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(c, width * mult, stride))
                c = width * mult
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(c, out_features)
        self.in_channels = in_channels
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"SmallResNet expects {self.in_channels} input channels, "
                             f"got {x.shape[1]}")
        z = self.stages(self.stem(x)).mean(dim=(2, 3))
        return F.relu(self.fc(z))


@hookimpl
def register_backbones(register):
    register("small_resnet", SmallResNet)
