"""Sum of the task gradients (the gradient of the summed loss).

.. math:: d = \\sum_{k=1}^{K} g_k

The "sum loss" convention of the CAGrad, Nash-MTL and Recon code bases (their directions are
multiplied by K "to match the sum loss"). ``sum = K * mean``.

Properties:
permutation invariant, positively homogeneous, linear under (row) scaling, weighted (``w = 1``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from mtlkit import hookimpl
from mtlkit.aggregation import Aggregator


class Sum(Aggregator):
    """Unit-weight sum of the task gradients (gradient of the summed loss)."""

    properties: ClassVar[frozenset[str]] = frozenset(
        {"permutation_invariant", "positively_homogeneous", "linear_under_scaling", "weighted"})

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return J.sum(dim=0)


@hookimpl
def register_aggregators(register):
    register("sum", Sum)
