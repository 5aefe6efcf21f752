"""Uncertainty weighting (UW).

Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
Geometry and Semantics", CVPR 2018, https://arxiv.org/abs/1705.07115.

Learnable log-variances ``s_k = log σ_k²`` (initialised to ``init``, default 0) and the total
loss (the regression form of Eq. 7, as in the Nash-MTL and LibMTL code)

.. math:: \\mathcal{L} = \\sum_k \\tfrac12 e^{-s_k} L_k + \\tfrac12 s_k,
          \\qquad d = \\sum_k \\tfrac12 e^{-s_k} g_k .

Pass ``num_tasks`` (or call :meth:`configure`) before asking for :meth:`parameters`; called
directly on losses it creates them lazily. A loss-level method (``requires = "losses"``): the
trainer back-propagates ``Σ_k w_k L_k`` with ``w_k = ½ e^{-s_k}`` in one pass. The ``s_k``
are returned by :meth:`parameters` (the trainer adds them to its optimiser) and their gradient
``∂L/∂s_k = ½ (1 - e^{-s_k} L_k)`` is accumulated into ``s.grad`` by :meth:`loss_weights`,
because the trainer passes detached losses.

Properties:
weighted, positively homogeneous, linear under (row) scaling, permutation invariant (equal
initial ``s``).
Stateful (the ``s_k``; :meth:`reset` re-initialises them).
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._learnable import LearnableTaskScalars, accumulate_grad
from mtlkit_plugins.aggregators._solvers import check_range, losses_vector

from mtlkit import hookimpl
from mtlkit.aggregation import LossWeighting


@attrs.define(eq=False)
class UW(LearnableTaskScalars, LossWeighting):
    """Homoscedastic-uncertainty weighting with learnable log-variances."""

    init: float = 0.0
    num_tasks: int | None = None
    log_vars: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"weighted", "positively_homogeneous", "linear_under_scaling", "permutation_invariant"})
    stateful: ClassVar[bool] = True
    scalars_field: ClassVar[str] = "log_vars"
    scalars_owner: ClassVar[str] = "uw"

    def __attrs_post_init__(self) -> None:
        check_range("init", self.init, -50.0, 50.0)
        self.check_num_tasks()

    def loss_weights(self, losses: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        L = losses_vector(losses, None, "uw")
        s = self._ensure(L.numel())
        with torch.no_grad():
            prec = torch.exp(-s.detach().double())
            grad = (0.5 * (1.0 - prec * L)).to(s.dtype)
            accumulate_grad(s, grad)
        return 0.5 * prec


@hookimpl
def register_aggregators(register):
    register("uw", UW)
