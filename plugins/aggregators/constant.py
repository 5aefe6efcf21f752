"""Constant: fixed task weights given by the user.

.. math:: d = \\sum_{k=1}^{K} w_k g_k, \\qquad w \\text{ fixed (the ``weights`` parameter)}

The classic hand-tuned linear scalarisation ``Σ_k w_k L_k`` (e.g. the weights found by a
grid search, or a task switched off with ``w_k = 0``); TorchJD ships it as ``Constant``
(aggregator) and as a scalarizer. LibMTL has no such method (its ``EW`` is the all-ones case).

The weights do not depend on ``J``, so it is a loss-level method (``requires = "losses"``):
the trainer takes one backward pass of ``Σ_k w_k L_k`` and never forms ``J``, and each head
receives ``w_k ∇L_k`` as under any weighted loss. Called on a matrix it returns ``w^T J`` and
needs no losses. The weights are used as given (not normalised): ``weights=[1, 1]`` is ``sum``,
``[0.5, 0.5]`` is ``mean``. Negative weights are allowed (gradient *ascent* on a task, as in
adversarial auxiliary losses); all-zero weights are refused (that would never update).

``weights`` must have one entry per task: a mismatch raises :class:`~mtlkit.errors.ConfigError`
as soon as the engine announces ``K`` (:meth:`configure`) or at the first call. ``K = 1`` gives
the task's own gradient (the base class's guarantee), whatever the single weight is.

Properties: weighted, positively homogeneous, linear under scaling (row-wise: scaling row ``k``
by ``c_k`` gives ``Σ_k w_k c_k g_k``, linear in ``c``). Not permutation invariant (weight ``k``
belongs to row ``k``), not non-conflicting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import torch

from mtlkit import hookimpl
from mtlkit.aggregation import LossWeighting
from mtlkit.errors import ConfigError, invalid_value


def _as_weights(value: object) -> tuple[float, ...]:
    """A non-empty tuple of finite floats, not all zero; ConfigError naming the value else."""
    if isinstance(value, torch.Tensor):
        value = value.detach().flatten().tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise invalid_value("weights", value, "need a non-empty list of numbers, one per task "
                            "(e.g. weights=[1.0, 0.5])")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise invalid_value("weights", value, f"entry {v!r} is not a finite number")
        out.append(float(v))
    if not any(out):
        raise invalid_value("weights", value, "all weights are zero: no task would ever train")
    return tuple(out)


@attrs.define(eq=False)
class Constant(LossWeighting):
    """Fixed, user-given task weights: ``d = Σ_k w_k g_k``."""

    weights: tuple[float, ...] = attrs.field(default=None, converter=_as_weights)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"weighted", "positively_homogeneous", "linear_under_scaling"})

    def _vector(self, K: int) -> torch.Tensor:
        if len(self.weights) != K:
            raise ConfigError(f"constant: weights={list(self.weights)} has {len(self.weights)} "
                              f"entries but there are {K} tasks; give one weight per task")
        return torch.tensor(self.weights, dtype=torch.float64)

    def configure(self, num_tasks: int) -> None:
        self._vector(int(num_tasks))  # fail before the first step, not at it

    def loss_weights(self, losses: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return self._vector(int(torch.as_tensor(losses).numel()))

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return self._vector(J.shape[0]).to(device=J.device, dtype=J.dtype) @ J


@hookimpl
def register_aggregators(register):
    register("constant", Constant)
