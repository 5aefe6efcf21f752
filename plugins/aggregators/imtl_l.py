"""IMTL-L: impartial multi-task learning, loss balance.

Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial Multi-task Learning",
ICLR 2021, https://openreview.net/forum?id=IMPnRXEWpvr (Sec. 3.2, Eq. 5-6).

Each task gets a learnable log-scale ``s_k`` (initialised to 0, as in the paper and both
peers) and the objective

.. math:: S(L, s) = \\sum_k e^{s_k} L_k - s_k, \\qquad
          w_k = \\frac{\\partial S}{\\partial L_k} = e^{s_k}, \\qquad
          \\frac{\\partial S}{\\partial s_k} = e^{s_k} L_k - 1 .

Why: the scaled losses ``e^{s_k} L_k`` are driven towards the same value 1 (the minimiser over
``s_k`` of ``e^{s_k} L_k - s_k`` is ``s_k = -log L_k``), so no task dominates by the units of
its loss; the ``-s_k`` term stops the trivial ``s_k → -∞``. The paper derives it without the
Gaussian-likelihood assumption of uncertainty weighting; the two differ by a factor 2 and the
sign of the parameter (``S = 2·UW(-s)``).

Interface as :mod:`uw`: a loss-level method (one backward of ``Σ_k e^{s_k} L_k``); the ``s_k``
are :meth:`parameters` (the trainer adds them to its optimiser), and :meth:`loss_weights`
accumulates ``∂S/∂s_k`` into ``s.grad`` because the trainer hands over detached losses.
Pass ``num_tasks`` (or let the engine call :meth:`configure`) before :meth:`parameters`.

The paper's full method (IMTL) applies IMTL-G's gradient balance to the shared parameters on
top of the scaled losses; that is ``imtl_g`` here, and this module is the loss half on its own
(as TorchJD's ``IMTLL`` scalarizer). LibMTL's ``IMTL`` applies the scales and IMTL-G together.

Properties: weighted, positively homogeneous and linear under row scaling of J (losses fixed),
permutation invariant (equal initial ``s``). Stateful (the ``s_k``; :meth:`reset`
re-initialises them).
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
class IMTLL(LearnableTaskScalars, LossWeighting):
    """Learnable loss scales ``e^{s_k}`` with the ``-s_k`` regulariser."""

    init: float = 0.0
    num_tasks: int | None = None
    log_scales: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"weighted", "positively_homogeneous", "linear_under_scaling", "permutation_invariant"})
    stateful: ClassVar[bool] = True
    scalars_field: ClassVar[str] = "log_scales"
    scalars_owner: ClassVar[str] = "imtl_l"

    def __attrs_post_init__(self) -> None:
        check_range("init", self.init, -50.0, 50.0)
        self.check_num_tasks()

    def loss_weights(self, losses: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        L = losses_vector(losses, None, "imtl_l")
        s = self._ensure(L.numel())
        with torch.no_grad():
            scale = torch.exp(s.detach().double())
            grad = (scale * L - 1.0).to(s.dtype)
            accumulate_grad(s, grad)
        return scale


@hookimpl
def register_aggregators(register):
    register("imtl_l", IMTLL)
