"""Depth estimation: masked L1 loss; absolute and relative error on valid pixels.

As in the MTAN protocol (lorenmt/mtan; Cranial-XIX/CAGrad ``nyuv2/utils.py`` ``model_fit`` and
``depth_error``; AvivNavon/nash-mtl ``experiments/nyuv2/utils.py``):

* valid pixels: target depth != 0 (the preprocessed files store 0 where depth is unknown);
* loss: ``sum |pred - gt| over valid pixels / #valid pixels`` of the batch;
* ``abs_err``: mean ``|pred - gt|``; ``rel_err``: mean ``|pred - gt| / gt`` (a ratio, not a
  percentage: the NYUv2 STL baseline is 0.2780, CityScapes 27.77 because its targets are
  inverse depths close to 0). Both lower is better.

Averaging over the split: see :mod:`mtlkit_plugins.heads._dense` (``average``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from mtlkit_plugins.heads._dense import (
    PixelOrBatchMean,
    as_dense_pair,
    check_average,
    prediction_layer,
    valid_mask,
)
from torch import nn

from mtlkit import hookimpl
from mtlkit.tasks import MetricAccumulator, TaskHead


class _DepthErrors(MetricAccumulator):
    def __init__(self, average: str) -> None:
        self.mean = PixelOrBatchMean(average, ("abs_err", "rel_err"))

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        output, target = as_dense_pair(output, target, "depth", 1)
        mask = valid_mask(target).unsqueeze(1)
        pred, gt = output.detach()[mask].double(), target[mask].double()
        err = (pred - gt).abs()
        self.mean.add({"abs_err": err, "rel_err": err / gt})

    def compute(self) -> dict[str, float]:
        return self.mean.compute()


class Depth(TaskHead):
    """Per-pixel depth (one output channel); targets ``[B, 1, H, W]`` with 0 = unknown."""

    higher_is_better: ClassVar[dict[str, bool]] = {"abs_err": False, "rel_err": False}
    primary_metric: ClassVar[str] = "abs_err"

    def __init__(self, average: str = "pixel") -> None:
        self.average = check_average(average)

    def build(self, in_features: int) -> nn.Module:
        return prediction_layer(in_features, 1)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        output, target = as_dense_pair(output, target, "depth", 1)
        mask = valid_mask(target).unsqueeze(1)
        n = int(mask.sum())
        if n == 0:
            # a crop without any annotated pixel: no signal, but keep the graph (0/0 = NaN
            # would abort training)
            return output.sum() * 0.0
        return ((output - target).abs() * mask).sum() / n

    def metrics(self) -> MetricAccumulator:
        return _DepthErrors(self.average)

    def __repr__(self) -> str:
        return f"Depth(average={self.average!r})"


@hookimpl
def register_task_heads(register):
    register("depth", Depth)
