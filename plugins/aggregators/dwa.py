"""Dynamic weight average (DWA).

Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019,
https://arxiv.org/abs/1803.10704, Eq. 7.

With ``\\bar L_k(t)`` the average loss of task ``k`` over epoch ``t``,

.. math:: r_k(t-1) = \\frac{\\bar L_k(t-1)}{\\bar L_k(t-2)}, \\qquad
          w_k(t) = \\frac{K \\exp(r_k(t-1)/T)}{\\sum_i \\exp(r_i(t-1)/T)},

and ``w_k = 1`` for the first two epochs. Temperature ``T = 2`` (paper default). The weights sum
to K as in the paper (the sum-loss scale; ``sum`` is DWA's first two epochs).

A loss-level method (``requires = "losses"``): it reads ``context["losses"]`` and
``context["epoch"]`` every step and keeps the per-epoch averages itself (a step whose epoch
differs from the previous one closes that epoch). Stateful: :meth:`reset` forgets the history.

Properties:
weighted, positively homogeneous, linear under (row) scaling, permutation invariant (equal history).
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._solvers import check_range, losses_vector

from mtlkit import hookimpl
from mtlkit.aggregation import LossWeighting


@attrs.define(eq=False)
class DWA(LossWeighting):
    """Weight tasks by the recent rate of decrease of their epoch-average losses."""

    temperature: float = 2.0
    _epoch_means: list[torch.Tensor] = attrs.field(init=False, factory=list, repr=False)
    _current_epoch: int | None = attrs.field(init=False, default=None, repr=False)
    _sum: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)
    _count: int = attrs.field(init=False, default=0, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"weighted", "positively_homogeneous", "linear_under_scaling", "permutation_invariant"})
    stateful: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        check_range("temperature", self.temperature, 0.0, 1e6, lo_open=True)

    def reset(self) -> None:
        self._epoch_means = []
        self._current_epoch = None
        self._sum = None
        self._count = 0

    def loss_weights(self, losses: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        L = losses_vector(losses, None, "dwa")
        K = L.numel()
        epoch = int(context.get("epoch", 0))
        if self._current_epoch is not None and epoch != self._current_epoch and self._count:
            assert self._sum is not None
            self._epoch_means.append(self._sum / self._count)
            self._sum, self._count = None, 0
        self._current_epoch = epoch
        self._sum = L.clone() if self._sum is None else self._sum + L
        self._count += 1
        hist = self._epoch_means
        if len(hist) < 2 or hist[-1].numel() != K:
            return torch.ones(K, dtype=torch.float64)
        r = hist[-1] / hist[-2].clamp_min(1e-300)
        return K * torch.softmax(r / self.temperature, dim=0)


@hookimpl
def register_aggregators(register):
    register("dwa", DWA)
