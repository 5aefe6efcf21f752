"""Semantic segmentation: per-pixel cross-entropy; mIoU and pixel accuracy from a confusion
matrix accumulated over the whole split.

As in the MTAN protocol (lorenmt/mtan; Cranial-XIX/CAGrad ``nyuv2/utils.py`` ``model_fit`` and
``ConfMatrix``; AvivNavon/nash-mtl ``experiments/nyuv2/utils.py``):

* labels are class indices in ``[0, num_classes)``; ``ignore_index`` (-1) marks unlabelled
  pixels, which count neither in the loss nor in the metrics;
* loss: NLL of the log-softmax (= cross-entropy on the logits the head outputs), averaged over
  the labelled pixels of the batch;
* ``pixel_acc``: correctly labelled pixels / labelled pixels, over the whole split;
* ``miou``: mean over classes of ``TP / (TP + FP + FN)``. The reference averages over all
  classes and yields NaN when a class is absent from both predictions and labels of the split;
  here such classes are left out ("classes present"), which is identical whenever every class
  occurs (always the case on the real test sets) and stays defined on small samples.

Both are fractions in [0, 1], higher is better (STL baseline NYUv2 0.3830 / 0.6376).
A label outside ``{ignore_index} ∪ [0, num_classes)`` is a :class:`DataError`, never clipped.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from mtlkit_plugins.heads._dense import prediction_layer
from torch import nn
from torch.nn import functional as F

from mtlkit import hookimpl
from mtlkit.errors import ConfigError, DataError
from mtlkit.tasks import MetricAccumulator, TaskHead


def _labels(output: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int
            ) -> torch.Tensor:
    if target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]
    if output.dim() != 4 or output.shape[1] != num_classes or \
            target.shape != (output.shape[0], *output.shape[2:]):
        raise DataError(f"segmentation: labels of shape {tuple(target.shape)} do not match "
                        f"the prediction of shape {tuple(output.shape)} (expected labels "
                        f"[batch, H, W] and {num_classes} prediction channels)")
    if target.is_floating_point() and not bool((target == target.round()).all()):
        raise DataError("segmentation: labels must be integer class indices")
    target = target.long()
    if target.numel():
        valid = (target == ignore_index) | ((target >= 0) & (target < num_classes))
        if not bool(valid.all()):
            bad = sorted(set(target[~valid].unique().tolist()))[:5]
            raise DataError(f"segmentation: label values {bad} out of range: allowed are "
                            f"{ignore_index} (unlabelled) and 0..{num_classes - 1}")
    return target


class ConfusionMatrix(MetricAccumulator):
    """``mat[t, p]``: labelled pixels of true class ``t`` predicted as ``p``."""

    def __init__(self, num_classes: int, ignore_index: int = -1) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """``output``: logits ``[B, C, H, W]``, or predicted labels ``[B, H, W]`` (integers)."""
        n = self.num_classes
        if output.dim() == 3 and not output.is_floating_point():
            pred = output
            if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= n):
                raise ValueError(f"segmentation: predicted labels must be in 0..{n - 1}")
            shape_only = torch.empty(output.shape[0], n, *output.shape[1:], device="meta")
            target = _labels(shape_only, target, n, self.ignore_index)
        else:
            target = _labels(output, target, n, self.ignore_index)
            pred = output.detach().argmax(dim=1)
        keep = (target >= 0) & (target < n)
        idx = (n * target[keep] + pred[keep]).cpu()
        self.mat += torch.bincount(idx, minlength=n * n).reshape(n, n)

    def compute(self) -> dict[str, float]:
        h = self.mat.double()
        total = h.sum()
        if total == 0:
            return {"miou": float("nan"), "pixel_acc": float("nan")}
        tp = torch.diag(h)
        union = h.sum(0) + h.sum(1) - tp
        present = union > 0
        return {"miou": float((tp[present] / union[present]).mean()),
                "pixel_acc": float(tp.sum() / total)}


class Segmentation(TaskHead):
    """Per-pixel classification into ``num_classes`` classes; outputs logits ``[B, C, H, W]``."""

    higher_is_better: ClassVar[dict[str, bool]] = {"miou": True, "pixel_acc": True}
    primary_metric: ClassVar[str] = "miou"

    def __init__(self, num_classes: int, ignore_index: int = -1) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"invalid num_classes={num_classes!r}: must be an integer >= 2")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int) or \
                0 <= ignore_index < num_classes:
            raise ConfigError(f"invalid ignore_index={ignore_index!r}: must be an integer "
                              f"outside 0..{num_classes - 1}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def build(self, in_features: int) -> nn.Module:
        return prediction_layer(in_features, self.num_classes)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _labels(output, target, self.num_classes, self.ignore_index)
        if not bool((target != self.ignore_index).any()):
            # every pixel unlabelled (possible after a random crop): cross_entropy would
            # return 0/0 = NaN and abort training; there is simply no signal
            return output.sum() * 0.0
        return F.cross_entropy(output, target, ignore_index=self.ignore_index)

    def metrics(self) -> MetricAccumulator:
        return ConfusionMatrix(self.num_classes, self.ignore_index)

    def __repr__(self) -> str:
        return f"Segmentation(num_classes={self.num_classes}, ignore_index={self.ignore_index})"


@hookimpl
def register_task_heads(register):
    register("segmentation", Segmentation)
