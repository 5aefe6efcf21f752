"""PBI: penalty-based boundary intersection.

Zhang & Li, "MOEA/D: A Multiobjective Evolutionary Algorithm Based on Decomposition",
IEEE Trans. Evolutionary Computation 11(6), 2007, https://doi.org/10.1109/TEVC.2007.892759
(Sec. II-C, the PBI approach).

With the preference direction ``ŵ = λ / ‖λ‖`` and the reference (ideal) point ``z*``, the loss
vector relative to ``z*`` is split into its length along ``ŵ`` and its distance from the ray:

.. math:: r = L - z^*, \\quad d_1 = r^\\top \\hat w, \\quad r_\\perp = r - d_1 \\hat w, \\quad
          d_2 = \\lVert r_\\perp \\rVert, \\qquad S(L) = d_1 + \\theta\\, d_2 .

Minimising ``d_1`` pushes towards the front, the penalty ``θ d_2`` keeps the solution on the
ray of the chosen preference: one preference, one trade-off, also on a non-convex front.

The loss weights are ``∂S/∂L`` (``∂d_1/∂L = ŵ``; ``∂d_2/∂L = r_⊥ / d_2`` because
``r_⊥ = (I - ŵŵ^T) r`` with a symmetric idempotent projector):

.. math:: w = \\hat w + \\theta\\, \\frac{r_\\perp}{d_2} \\quad (d_2 > 0), \\qquad
          w = \\hat w \\quad (d_2 = 0).

At ``d_2 = 0`` (the losses on the ray) ``d_2`` is not differentiable; ``ŵ`` is the
minimum-norm subgradient there and the limit of TorchJD's smoothed
``sqrt(‖r_⊥‖² + 1e-12)``. The weights can be negative: a task that is ahead of its share
along the ray is pushed back (that is the penalty at work, not a bug).

Defaults: ``theta = 5`` (the paper's experiments), ``preference`` uniform (the ray
``L_1 = ... = L_K``), ``reference`` the origin (losses ``>= 0``). TorchJD 0.18's ``PBI``
requires ``theta`` and the preference (no defaults); LibMTL has no PBI. The paper samples one
preference per sub-problem; a preference per training run (or per search trial) is the
multi-task use here.

Properties: weighted, positively homogeneous and linear under row scaling of J (losses fixed)
(weights from losses only), permutation invariant with the default uniform preference and zero
reference. Not non-conflicting. Stateless.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._scalarize import as_preference, as_reference, per_task
from mtlkit_plugins.aggregators._solvers import check_range, losses_vector

from mtlkit import hookimpl
from mtlkit.aggregation import LossWeighting


@attrs.define(eq=False)
class PBI(LossWeighting):
    """Penalty-based boundary intersection: ``w = ŵ + θ r_⊥ / ‖r_⊥‖``."""

    theta: float = 5.0
    preference: tuple[float, ...] | None = attrs.field(default=None, converter=as_preference)
    reference: tuple[float, ...] | None = attrs.field(default=None, converter=as_reference)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"weighted", "positively_homogeneous", "linear_under_scaling", "permutation_invariant"})

    def __attrs_post_init__(self) -> None:
        check_range("theta", self.theta, 0.0, 1e6)

    def configure(self, num_tasks: int) -> None:
        K = int(num_tasks)  # a wrong-length preference fails before the first step
        per_task("pbi", "preference", self.preference, K, 1.0)
        per_task("pbi", "reference", self.reference, K, 0.0)

    def loss_weights(self, losses: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        L = losses_vector(losses, None, "pbi")
        K = L.numel()
        lam = per_task("pbi", "preference", self.preference, K, 1.0)
        w_hat = lam / torch.linalg.vector_norm(lam)
        r = L - per_task("pbi", "reference", self.reference, K, 0.0)
        r_perp = r - (r @ w_hat) * w_hat
        d2 = float(torch.linalg.vector_norm(r_perp))
        # r_⊥ within the round-off of forming it (~K eps ‖r‖) is "on the ray": its direction
        # would be noise, amplified by θ / d_2
        if d2 <= 4 * K * torch.finfo(torch.float64).eps * float(torch.linalg.vector_norm(r)):
            return w_hat
        return w_hat + self.theta * r_perp / d2


@hookimpl
def register_aggregators(register):
    register("pbi", PBI)
