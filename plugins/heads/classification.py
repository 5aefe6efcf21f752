"""Multi-class classification: a linear (or one-hidden-layer) head, cross-entropy, accuracy.

``top_k=(5,)`` adds top-5 accuracy (``top5``), which the sparse-training paper (ST, arXiv
2411.18615, Tab. 11) reports for SmallNORB and uses in its Δm."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from mtlkit import hookimpl
from mtlkit.tasks import MetricAccumulator, TaskHead


class _Accuracy(MetricAccumulator):
    def __init__(self, num_classes: int, top_k: tuple[int, ...] = ()) -> None:
        self.num_classes = num_classes
        self.top_k = top_k
        self.correct_k = dict.fromkeys(top_k, 0)
        self.correct = 0
        self.total = 0
        self.nll = 0.0

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        target = target.long()
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= self.num_classes):
            raise ValueError(f"class label out of range [0, {self.num_classes})")
        self.correct += int((output.argmax(dim=1) == target).sum())
        for k in self.top_k:
            hits = output.topk(k, dim=1).indices == target[:, None]
            self.correct_k[k] += int(hits.any(dim=1).sum())
        self.total += int(target.numel())
        self.nll += float(F.cross_entropy(output.float(), target, reduction="sum"))

    def compute(self) -> dict[str, float]:
        if self.total == 0:
            return {"accuracy": float("nan"), "loss": float("nan"),
                    **{f"top{k}": float("nan") for k in self.top_k}}
        return {"accuracy": self.correct / self.total, "loss": self.nll / self.total,
                **{f"top{k}": c / self.total for k, c in self.correct_k.items()}}


class Classification(TaskHead):
    """Classification into ``num_classes`` classes; ``hidden`` adds a ReLU hidden layer;
    ``top_k`` adds top-k accuracies (``top5`` for ``top_k=(5,)``)."""

    higher_is_better: ClassVar[dict[str, bool]] = {"accuracy": True, "loss": False}
    primary_metric: ClassVar[str] = "accuracy"

    def __init__(self, num_classes: int, hidden: int | None = None,
                 top_k: tuple[int, ...] | list[int] = ()) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"invalid num_classes={num_classes!r}: must be an integer >= 2")
        if hidden is not None and (not isinstance(hidden, int) or hidden < 1):
            raise ValueError(f"invalid hidden={hidden!r}: must be an integer >= 1 or None")
        top_k = tuple(top_k)
        for k in top_k:
            if isinstance(k, bool) or not isinstance(k, int) or not 1 < k <= num_classes:
                raise ValueError(f"invalid top_k entry {k!r}: must be an integer in "
                                 f"[2, num_classes={num_classes}]")
        self.num_classes = num_classes
        self.hidden = hidden
        self.top_k = top_k
        # An instance attribute (the class one stays the default) so Δm knows top-k's sign.
        self.higher_is_better = {**type(self).higher_is_better,
                                 **{f"top{k}": True for k in top_k}}

    def build(self, in_features: int) -> nn.Module:
        if self.hidden is None:
            return nn.Linear(in_features, self.num_classes)
        return nn.Sequential(nn.Linear(in_features, self.hidden), nn.ReLU(),
                             nn.Linear(self.hidden, self.num_classes))

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target.long())

    def metrics(self) -> MetricAccumulator:
        return _Accuracy(self.num_classes, self.top_k)

    def __repr__(self) -> str:
        extra = f", top_k={self.top_k}" if self.top_k else ""
        return f"Classification(num_classes={self.num_classes}, hidden={self.hidden}{extra})"


@hookimpl
def register_task_heads(register):
    register("classification", Classification)
