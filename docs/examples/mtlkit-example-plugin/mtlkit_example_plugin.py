"""An example third-party mtlkit plugin.

Installing this distribution registers the ``coordinate_median`` aggregator through the ``mtlkit``
entry-point group; nothing in mtlkit is edited.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from mtlkit import hookimpl
from mtlkit.aggregation import Aggregator


class CoordinateMedian(Aggregator):
    """Coordinate-wise median of the task gradients (robust to one outlying task).

    .. math:: d_j = \\operatorname{median}_k J_{kj}

    Properties: permutation invariant and positively homogeneous (``agg(aJ) = a agg(J)`` for
    ``a > 0``: the order of each column is unchanged). Not ``linear_under_scaling`` (scaling
    one task's row by ``c`` changes which row is the median, so ``c -> agg(diag(c) J)`` is not
    linear) and not weighted (the median of each coordinate may come from a different task).
    """

    properties: ClassVar[frozenset[str]] = frozenset(
        {"permutation_invariant", "positively_homogeneous"})

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        # torch.median returns the lower of the two middle values for even K; the mean of the
        # two middle values is symmetric and what "median" means to most users.
        ordered = J.sort(dim=0).values
        K = J.shape[0]
        return 0.5 * (ordered[(K - 1) // 2] + ordered[K // 2])


@hookimpl
def register_aggregators(register):
    register("coordinate_median", CoordinateMedian)
