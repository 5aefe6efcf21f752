"""Surface-normal estimation: cosine loss on valid pixels; angular error statistics.

As in the MTAN protocol (lorenmt/mtan; Cranial-XIX/CAGrad ``nyuv2/utils.py`` ``model_fit`` and
``normal_error``; AvivNavon/nash-mtl ``experiments/nyuv2/utils.py``):

* the prediction is L2-normalised over its 3 channels (the module ends with the
  normalisation, and loss and metrics normalise again, so any model's raw output works);
* valid pixels: target normal != 0 (the preprocessed files store (0, 0, 0) where unknown);
* loss: ``1 - mean over valid pixels of <pred, gt>`` (1 - cosine for unit targets);
* metrics, from the per-pixel angle ``acos(clamp(<pred, gt>, -1, 1))`` in **degrees**:
  ``mean_angle`` and ``median_angle`` (degrees, lower is better) and ``within_11_25``,
  ``within_22_5``, ``within_30``: the **fraction** (in [0, 1], not percent) of valid pixels
  with an error below 11.25, 22.5 and 30 degrees (higher is better). These are the units of the
  CAGrad/Nash-MTL STL baseline ``[..., 25.01, 19.21, 0.3014, 0.5720, 0.6915]``.

Averaging over the split: see :mod:`mtlkit_plugins.heads._dense` (``average``). With
``"pixel"`` the median is the exact median of all valid pixels of the split (their errors are
kept, as float32); with ``"batch"`` it is the mean of per-batch medians, as in the reference.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from mtlkit_plugins.heads._dense import (
    as_dense_pair,
    check_average,
    prediction_layer,
    valid_mask,
)
from torch import nn
from torch.nn import functional as F

from mtlkit import hookimpl
from mtlkit.tasks import MetricAccumulator, TaskHead

THRESHOLDS = (("within_11_25", 11.25), ("within_22_5", 22.5), ("within_30", 30.0))
METRICS = ("mean_angle", "median_angle", *(name for name, _ in THRESHOLDS))


class L2Normalize(nn.Module):
    """Unit vectors along the channel dimension (MTAN's ``t3_pred / ||t3_pred||``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, p=2, dim=1)


def _stats(errors: np.ndarray) -> dict[str, float]:
    out = {"mean_angle": float(errors.mean(dtype=np.float64)),
           "median_angle": float(np.median(errors))}
    for name, limit in THRESHOLDS:
        out[name] = float(np.count_nonzero(errors < limit)) / errors.size
    return out


class _AngleErrors(MetricAccumulator):
    def __init__(self, average: str) -> None:
        self.average = average
        self.errors: list[np.ndarray] = []  # "pixel": every valid pixel's error
        self.batch_sums = dict.fromkeys(METRICS, 0.0)  # "batch": sums of per-batch stats
        self.batches = 0

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        output, target = as_dense_pair(output, target, "normal", 3)
        pred = F.normalize(output.detach().double(), p=2, dim=1)
        cos = (pred * target.double()).sum(dim=1)[valid_mask(target)]
        errors = torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0))).cpu().numpy()
        if errors.size == 0:
            return
        if self.average == "pixel":
            self.errors.append(errors.astype(np.float32))
        else:
            for name, value in _stats(errors).items():
                self.batch_sums[name] += value
            self.batches += 1

    def compute(self) -> dict[str, float]:
        if self.average == "batch":
            if self.batches == 0:
                return dict.fromkeys(METRICS, math.nan)
            return {name: total / self.batches for name, total in self.batch_sums.items()}
        if not self.errors:
            return dict.fromkeys(METRICS, math.nan)
        return _stats(np.concatenate(self.errors))


class Normal(TaskHead):
    """Per-pixel unit surface normals (3 channels); targets ``[B, 3, H, W]``, 0 = unknown."""

    higher_is_better: ClassVar[dict[str, bool]] = {
        "mean_angle": False, "median_angle": False,
        "within_11_25": True, "within_22_5": True, "within_30": True}
    primary_metric: ClassVar[str] = "mean_angle"

    def __init__(self, average: str = "pixel") -> None:
        self.average = check_average(average)

    def build(self, in_features: int) -> nn.Module:
        return nn.Sequential(prediction_layer(in_features, 3), L2Normalize())

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        output, target = as_dense_pair(output, target, "normal", 3)
        mask = valid_mask(target)
        n = int(mask.sum())
        if n == 0:
            return output.sum() * 0.0  # no annotated pixel in this batch: no signal
        dot = (F.normalize(output, p=2, dim=1) * target).sum(dim=1)
        return 1.0 - (dot * mask).sum() / n

    def metrics(self) -> MetricAccumulator:
        return _AngleErrors(self.average)

    def __repr__(self) -> str:
        return f"Normal(average={self.average!r})"


@hookimpl
def register_task_heads(register):
    register("normal", Normal)
