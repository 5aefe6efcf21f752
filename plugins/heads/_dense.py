"""Helpers shared by the dense-prediction heads (``segmentation``, ``depth``, ``normal``).

The prediction layer and the valid-pixel conventions follow the MTAN code base (Liu, Johns &
Davison, CVPR 2019, lorenmt/mtan), reused unchanged by CAGrad (Cranial-XIX/CAGrad
``nyuv2/utils.py``) and Nash-MTL (AvivNavon/nash-mtl ``experiments/nyuv2/utils.py``).

Averaging (``average``):

``"pixel"`` (default)
    every valid pixel of the whole split counts once; independent of the evaluation batch size.
``"batch"``
    the reference code's convention: a metric is computed per evaluation batch (over that
    batch's valid pixels) and the per-batch values are averaged with equal weight. With the
    protocol's test batch size (2 on NYUv2, 8 on CityScapes) this reproduces the published
    numbers exactly; it depends on the evaluation batch size. Batches without a valid pixel
    are skipped (the reference would divide by zero).
"""

from __future__ import annotations

import torch
from torch import nn

from mtlkit.errors import ConfigError, DataError

AVERAGES = ("pixel", "batch")


def check_average(value: object) -> str:
    if value not in AVERAGES:
        raise ConfigError(f"invalid average={value!r}: must be one of {', '.join(AVERAGES)}")
    return str(value)


def prediction_layer(in_channels: int, out_channels: int) -> nn.Sequential:
    """MTAN's ``pred_task`` layer: 3x3 conv (C -> C), then 1x1 conv (C -> out); no norm, no
    activation, so the head is a plain linear read-out of the task's features."""
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ConfigError(f"invalid in_channels={in_channels!r}: must be an integer >= 1")
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


def as_dense_pair(output: torch.Tensor, target: torch.Tensor, task: str, channels: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(output, target)``, both ``[B, channels, H, W]``. One-channel maps may also come
    without the channel dimension (``[B, H, W]``). Anything else is a :class:`DataError`:
    broadcasting a wrong shape would train silently on the wrong pixels."""
    if channels == 1:
        output = output.unsqueeze(1) if output.dim() == 3 else output
        target = target.unsqueeze(1) if target.dim() == 3 else target
    if output.dim() != 4 or output.shape[1] != channels or target.shape != output.shape:
        raise DataError(f"{task}: target of shape {tuple(target.shape)} does not match the "
                        f"prediction of shape {tuple(output.shape)} (expected both "
                        f"[batch, {channels}, H, W])")
    return output, target


def valid_mask(target: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]``: pixels whose target has a nonzero channel.

    The preprocessed NYUv2/CityScapes files mark unannotated pixels with an all-zero depth or
    normal. The reference tests ``sum over channels != 0``; "any channel != 0" is the same on
    real data and does not drop a valid normal whose components happen to sum to zero.
    """
    return target.ne(0).any(dim=1)


class PixelOrBatchMean:
    """Running mean of per-pixel quantities, over all pixels or over per-batch means."""

    def __init__(self, average: str, names: tuple[str, ...]) -> None:
        self.average = average
        self.names = names
        self.sums = dict.fromkeys(names, 0.0)
        self.count = 0  # pixels ("pixel") or batches with a valid pixel ("batch")

    def add(self, values: dict[str, torch.Tensor]) -> None:
        """``values[name]``: a 1-D tensor with one entry per valid pixel of the batch."""
        n = int(next(iter(values.values())).numel())
        if n == 0:
            return
        for name in self.names:
            total = float(values[name].double().sum())
            self.sums[name] += total if self.average == "pixel" else total / n
        self.count += n if self.average == "pixel" else 1

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return dict.fromkeys(self.names, float("nan"))
        return {name: self.sums[name] / self.count for name in self.names}
