"""Task heads: the prediction module for one task, its loss and its metrics.

A :class:`TaskHead` is a small, picklable description (e.g. "classification with 10 classes");
:meth:`TaskHead.build` makes the ``nn.Module``. Metrics are accumulated over a whole split by a
:class:`MetricAccumulator` (confusion matrices, sums of errors), never averaged per batch, so
they match the papers' protocol. :attr:`TaskHead.higher_is_better` gives the sign Δm uses.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class MetricAccumulator:
    """Accumulates predictions over a split; :meth:`compute` returns ``{metric: value}``."""

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError


class TaskHead:
    """Base class of task heads.

    :cvar higher_is_better: ``{metric: True if higher is better}`` for every metric reported.
    :cvar primary_metric: the metric searches and summaries rank by.
    """

    higher_is_better: ClassVar[dict[str, bool]] = {}
    primary_metric: ClassVar[str] = ""

    def build(self, in_features: int) -> nn.Module:
        """The prediction module reading the shared representation (features or channels)."""
        raise NotImplementedError

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar training loss for one batch."""
        raise NotImplementedError

    def metrics(self) -> MetricAccumulator:
        """A fresh accumulator for one evaluation pass."""
        raise NotImplementedError
