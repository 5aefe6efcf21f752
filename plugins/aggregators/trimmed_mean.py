"""Coordinate-wise trimmed mean.

Yin, Chen, Ramchandran & Bartlett, "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates", ICML 2018, https://proceedings.mlr.press/v80/yin18a.html (Definition 2).

For every coordinate ``j`` separately, the ``b`` largest and ``b`` smallest of the ``K`` values
``g_{1j}, ..., g_{Kj}`` are dropped and the rest averaged:

.. math:: d_j = \\frac{1}{K - 2b} \\sum_{k=b+1}^{K-b} g_{(k)j}, \\qquad
          g_{(1)j} \\le \\dots \\le g_{(K)j} \\text{ (sorted column j)}

Why: a robust location estimate, for a task whose gradient is corrupted or orders of magnitude
larger than the others (a diverging loss, a label-noise task): no single row can move any
coordinate of ``d`` beyond the range of the other rows' values once ``b >= 1``. ``b = 0`` is
the mean. It is a Jacobian-level method (it needs the coordinates, not only the Gramian).

How many values to trim, give at most one of:

* ``trim_number`` ``b`` (an integer, as TorchJD's ``TrimmedMean(trim_number)``);
* ``beta``, the paper's fraction ``β ∈ [0, 1/2)`` of values trimmed on each side, ``b = ⌊βK⌋``
  (the paper takes ``β`` at least the fraction of corrupted workers; small ``K`` may give 0).

Neither: ``b = 1``, the smallest trimming that does anything (the paper and TorchJD have no
default). The method needs ``K >= 2b + 1`` rows: fewer raise :class:`~mtlkit.errors.ConfigError`
(with ``trim_number=1`` at least 3 tasks); ``beta`` always satisfies it.

Properties: permutation invariant, positively homogeneous (sorting commutes with a positive
factor). Not linear under row-wise scaling (scaling one row changes which values are trimmed),
not weighted (each coordinate keeps other rows, so ``d`` leaves the row span), not
non-conflicting, not the mean without conflict.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._solvers import check_range

from mtlkit import hookimpl
from mtlkit.aggregation import Aggregator
from mtlkit.errors import ConfigError, invalid_value


@attrs.define(eq=False)
class TrimmedMean(Aggregator):
    """Per coordinate, drop the ``b`` largest and ``b`` smallest task values, average the rest."""

    trim_number: int | None = None
    beta: float | None = None

    properties: ClassVar[frozenset[str]] = frozenset(
        {"permutation_invariant", "positively_homogeneous"})

    def __attrs_post_init__(self) -> None:
        if self.trim_number is not None and self.beta is not None:
            raise ConfigError(f"trimmed_mean: give trim_number ({self.trim_number!r}) or beta "
                              f"({self.beta!r}), not both")
        if self.trim_number is not None and (
                isinstance(self.trim_number, bool) or not isinstance(self.trim_number, int)
                or self.trim_number < 0):
            raise invalid_value("trim_number", self.trim_number, "must be an integer >= 0")
        if self.beta is not None:
            check_range("beta", self.beta, 0.0, 0.5, hi_open=True)

    def trimmed(self, K: int) -> int:
        """``b``, the number of values dropped on each side of every coordinate for ``K`` rows."""
        if self.beta is not None:
            return math.floor(self.beta * K)
        b = 1 if self.trim_number is None else self.trim_number
        if 2 * b + 1 > K:
            raise ConfigError(f"trimmed_mean with trim_number={b} needs at least {2 * b + 1} "
                              f"tasks (2·{b} + 1), got {K}; lower trim_number or use beta")
        return b

    def configure(self, num_tasks: int) -> None:
        if num_tasks >= 2:
            self.trimmed(int(num_tasks))  # fail before the first step, not at it

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        K = J.shape[0]
        b = self.trimmed(K)
        if b == 0:
            return J.mean(dim=0)
        kept = torch.sort(J, dim=0).values.narrow(0, b, K - 2 * b)
        return kept.mean(dim=0)


@hookimpl
def register_aggregators(register):
    register("trimmed_mean", TrimmedMean)
