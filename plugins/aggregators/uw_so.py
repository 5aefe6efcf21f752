"""UW-SO: soft optimal uncertainty weighting.

Kirchdorfer, Elich, Kutsche, Stuckenschmidt, Schott & Köhler, "Analytical Uncertainty-Based
Loss Weighting in Multi-Task Learning", arXiv 2408.07985 (2024),
https://arxiv.org/abs/2408.07985.

Uncertainty weighting (:mod:`uw`) learns ``σ_k`` by gradient descent, which lags behind the
losses for many epochs (its "inertia"). The paper instead takes the minimiser of the UW
objective in ``σ_k`` at the current loss: for an L1-type loss ``σ_k = L_k``, i.e. weights
inversely proportional to the losses (**UW-O**), and tempers them with a softmax so they are
normalised and less extreme (**UW-SO**):

.. math:: \\text{UW-O: } w_k = \\frac{1}{L_k}, \\qquad
          \\text{UW-SO: } w_k = \\frac{\\exp\\big(1 / (T L_k)\\big)}
                                      {\\sum_j \\exp\\big(1 / (T L_j)\\big)} .

The losses inside the weights are treated as constants (detached), as in the paper: the
weights are recomputed from each step's losses and are not themselves differentiated.
``T → ∞`` tends to equal weights ``1/K``; ``T → 0`` puts all weight on the smallest loss. The
softmax is evaluated with its largest argument subtracted, so small losses or a small ``T`` do
not overflow.

``temperature = None`` gives UW-O. The paper tunes ``T`` per dataset (its main results use a
tuned ``T``); ``temperature = 1.0`` is mtlkit's default, not a recommendation from the paper.
No peer library ships UW-O or UW-SO (TorchJD 0.18, LibMTL).

Needs positive losses (``1/L_k``): a loss ``<= 0`` raises
:class:`~mtlkit.errors.GradientError` naming the losses.

Properties: weighted, positively homogeneous and linear under row scaling of J (losses fixed)
(weights from losses only), permutation invariant (a symmetric function of the losses).
Stateless: the analytical weights replace UW's learnt ``σ_k``, so there is nothing to carry
between steps.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._solvers import check_range, losses_vector

from mtlkit import hookimpl
from mtlkit.aggregation import LossWeighting
from mtlkit.errors import GradientError


@attrs.define(eq=False)
class UWSO(LossWeighting):
    """Softmax of the inverse losses at temperature ``T`` (``None``: ``1/L_k``, UW-O)."""

    temperature: float | None = 1.0

    properties: ClassVar[frozenset[str]] = frozenset(
        {"weighted", "positively_homogeneous", "linear_under_scaling", "permutation_invariant"})

    def __attrs_post_init__(self) -> None:
        if self.temperature is not None:
            check_range("temperature", self.temperature, 0.0, 1e12, lo_open=True)

    def loss_weights(self, losses: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        L = losses_vector(losses, None, "uw_so")
        if bool((L <= 0).any()):
            raise GradientError(f"uw_so weights tasks by 1/L_k and needs positive task losses, "
                                f"got {L.tolist()}")
        if self.temperature is None:
            return 1.0 / L
        return torch.softmax(1.0 / (self.temperature * L), dim=0)


@hookimpl
def register_aggregators(register):
    register("uw_so", UWSO)
