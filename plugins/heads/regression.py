"""Vector regression: a linear (or one-hidden-layer) head, MSE or L1 loss, MAE and RMSE.

For flat representations (``in_features``), e.g. QM9-style property targets or the
per-attribute regressions of CelebA/dSprites-type benchmarks. Metrics are computed over all
target elements of the split (not averaged per batch):
``mae = sum |y - t| / N`` and ``rmse = sqrt(sum (y - t)^2 / N)``, both lower is better.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from mtlkit import hookimpl
from mtlkit.errors import ConfigError, DataError
from mtlkit.tasks import MetricAccumulator, TaskHead

LOSSES = ("mse", "l1")


def _target(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # a [B] target for a one-output head is the common case; anything else must match exactly,
    # since broadcasting [B] against [B, 1] would silently compare every pair
    if target.dim() == output.dim() - 1 and output.shape[-1] == 1:
        target = target.unsqueeze(-1)
    if target.shape != output.shape:
        raise DataError(f"regression: target of shape {tuple(target.shape)} does not match "
                        f"the prediction of shape {tuple(output.shape)}")
    return target.to(output.dtype)


class _Errors(MetricAccumulator):
    def __init__(self) -> None:
        self.abs = 0.0
        self.sq = 0.0
        self.n = 0

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        err = (output.detach().double() - _target(output, target).double())
        self.abs += float(err.abs().sum())
        self.sq += float(err.square().sum())
        self.n += err.numel()

    def compute(self) -> dict[str, float]:
        if self.n == 0:
            return {"mae": math.nan, "rmse": math.nan}
        return {"mae": self.abs / self.n, "rmse": math.sqrt(self.sq / self.n)}


class Regression(TaskHead):
    """Regression of ``out_features`` values; ``loss`` is ``"mse"`` or ``"l1"``."""

    higher_is_better: ClassVar[dict[str, bool]] = {"mae": False, "rmse": False}
    primary_metric: ClassVar[str] = "mae"

    def __init__(self, out_features: int = 1, loss: str = "mse", hidden: int | None = None
                 ) -> None:
        if isinstance(out_features, bool) or not isinstance(out_features, int) or \
                out_features < 1:
            raise ConfigError(f"invalid out_features={out_features!r}: must be an integer >= 1")
        if loss not in LOSSES:
            raise ConfigError(f"invalid loss={loss!r}: must be one of {', '.join(LOSSES)}")
        if hidden is not None and (isinstance(hidden, bool) or not isinstance(hidden, int)
                                   or hidden < 1):
            raise ConfigError(f"invalid hidden={hidden!r}: must be an integer >= 1 or None")
        self.out_features = out_features
        self.loss_name = loss
        self.hidden = hidden

    def build(self, in_features: int) -> nn.Module:
        if self.hidden is None:
            return nn.Linear(in_features, self.out_features)
        return nn.Sequential(nn.Linear(in_features, self.hidden), nn.ReLU(),
                             nn.Linear(self.hidden, self.out_features))

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _target(output, target)
        if self.loss_name == "l1":
            return F.l1_loss(output, target)
        return F.mse_loss(output, target)

    def metrics(self) -> MetricAccumulator:
        return _Errors()

    def __repr__(self) -> str:
        return (f"Regression(out_features={self.out_features}, loss={self.loss_name!r}, "
                f"hidden={self.hidden})")


@hookimpl
def register_task_heads(register):
    register("regression", Regression)
