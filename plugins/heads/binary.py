"""Binary classification (one task of a multi-label problem such as CelebA's 40 attributes).

One logit per example, binary cross-entropy with logits (the loss of the CelebA setups in
Sener & Koltun 2018 and FAMO's ``experiments/celeba``). Metrics over a whole split:

* ``accuracy``: fraction of examples whose thresholded prediction (logit > 0) equals the target;
* ``f1``: 2 TP / (2 TP + FP + FN) of the positive class; the sparse-training paper (ST, arXiv
  2411.18615, Tab. 3) reports CelebA's Δm on F1. When no example is positive and none is
  predicted positive the ratio is 0/0; it is reported as 0.0, scikit-learn's
  ``f1_score(zero_division=0)`` convention, so a degenerate split is never a silent "perfect";
* ``loss``: mean binary cross-entropy.

Targets are 0/1 (any integer, bool or float tensor holding only those values); anything else is
an error, never silently thresholded.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from mtlkit import hookimpl
from mtlkit.tasks import MetricAccumulator, TaskHead


def _check_targets(target: torch.Tensor) -> torch.Tensor:
    t = target.reshape(-1)
    if t.numel() and not bool(((t == 0) | (t == 1)).all()):
        bad = t[(t != 0) & (t != 1)][0].item()
        raise ValueError(f"binary targets must be 0 or 1, found {bad!r}")
    return t.float()


def _logits(output: torch.Tensor) -> torch.Tensor:
    # The head emits [B, 1]; accept [B] too so that hand-written tests and other models work.
    if output.dim() == 2 and output.shape[1] == 1:
        return output[:, 0]
    if output.dim() == 1:
        return output
    raise ValueError(f"binary head output must have shape [B] or [B, 1], got {list(output.shape)}")


class _BinaryMetrics(MetricAccumulator):
    def __init__(self) -> None:
        self.tp = self.fp = self.fn = self.tn = 0
        self.bce = 0.0

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        logits = _logits(output).float()
        t = _check_targets(target)
        if len(t) != len(logits):
            raise ValueError(f"{len(logits)} outputs for {len(t)} binary targets")
        pred = logits > 0
        pos = t == 1
        self.tp += int((pred & pos).sum())
        self.fp += int((pred & ~pos).sum())
        self.fn += int((~pred & pos).sum())
        self.tn += int((~pred & ~pos).sum())
        self.bce += float(F.binary_cross_entropy_with_logits(logits, t, reduction="sum"))

    def compute(self) -> dict[str, float]:
        total = self.tp + self.fp + self.fn + self.tn
        if total == 0:
            return {"accuracy": float("nan"), "f1": float("nan"), "loss": float("nan")}
        denom = 2 * self.tp + self.fp + self.fn
        return {"accuracy": (self.tp + self.tn) / total,
                "f1": 2 * self.tp / denom if denom else 0.0,
                "loss": self.bce / total}


class Binary(TaskHead):
    """Binary classification: one logit, BCE-with-logits loss; accuracy and F1.

    :param hidden: adds a ReLU hidden layer of this width (default: a linear head).
    """

    higher_is_better: ClassVar[dict[str, bool]] = {"accuracy": True, "f1": True, "loss": False}
    primary_metric: ClassVar[str] = "accuracy"

    def __init__(self, hidden: int | None = None) -> None:
        if hidden is not None and (isinstance(hidden, bool) or not isinstance(hidden, int)
                                   or hidden < 1):
            raise ValueError(f"invalid hidden={hidden!r}: must be an integer >= 1 or None")
        self.hidden = hidden

    def build(self, in_features: int) -> nn.Module:
        if self.hidden is None:
            return nn.Linear(in_features, 1)
        return nn.Sequential(nn.Linear(in_features, self.hidden), nn.ReLU(),
                             nn.Linear(self.hidden, 1))

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = _logits(output)
        return F.binary_cross_entropy_with_logits(logits, _check_targets(target).to(logits))

    def metrics(self) -> MetricAccumulator:
        return _BinaryMetrics()

    def __repr__(self) -> str:
        return f"Binary(hidden={self.hidden})"


@hookimpl
def register_task_heads(register):
    register("binary", Binary)
