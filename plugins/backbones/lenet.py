"""The Multi-MNIST LeNet encoder (Sener & Koltun, NeurIPS 2018, "Multi-Task Learning as
Multi-Objective Optimization", arXiv 1810.04650, MultiMNIST setup).

Shared: conv(1->10, 5x5) - maxpool 2 - ReLU - conv(10->20, 5x5) - maxpool 2 - ReLU - flatten
(320) - fc(320->50) - ReLU. Each task head: fc(50->50) - ReLU - fc(50->10). 28x28 input.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mtlkit import hookimpl


class LeNetEncoder(nn.Module):
    """Shared LeNet encoder producing ``out_features`` (50) features from 28x28 images."""

    def __init__(self, in_channels: int = 1, out_features: int = 50) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.fc = nn.Linear(320, out_features)
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return F.relu(self.fc(x.flatten(1)))


@hookimpl
def register_backbones(register):
    register("lenet", LeNetEncoder)
