"""Equal weighting: the mean of the task gradients.

.. math:: d = \\frac{1}{K} \\sum_{k=1}^{K} g_k

The joint-training baseline of every paper ("Joint Train", "LS", "EW"). Equivalent to one
backward pass of the mean loss.

Properties: permutation invariant, linear under scaling, weighted (``w = 1/K``). It is *not*
non-conflicting: the mean can increase a task's loss when gradients conflict.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from mtlkit import hookimpl
from mtlkit.aggregation import Aggregator


class Mean(Aggregator):
    """Equal-weight mean of the task gradients (joint training)."""

    properties: ClassVar[frozenset[str]] = frozenset(
        {"permutation_invariant", "linear_under_scaling", "weighted"})

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return J.mean(dim=0)


@hookimpl
def register_aggregators(register):
    register("mean", Mean)
