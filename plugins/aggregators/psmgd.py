"""PSMGD: periodic stochastic multi-gradient descent.

Xu, Ju, Liu & Yang, "PSMGD: Periodic Stochastic Multi-Gradient Descent for Fast
Multi-Objective Optimization", arXiv 2412.10961 (2024), https://arxiv.org/abs/2412.10961
(Alg. 1; code MarcuXu/PSMG).

Stochastic multi-gradient descent (SMGD) solves MGDA's min-norm problem on every step's
stochastic gradients. PSMGD observes that these weights move little over a few steps and
recomputes them only every ``R`` steps (``period``), reusing them in between:

.. math:: \\lambda_t = \\begin{cases}
              \\arg\\min_{\\lambda \\in \\Delta_K} \\lVert J_t^\\top \\lambda \\rVert^2
                  & t \\bmod R = 0 \\\\
              \\lambda_{t-1} & \\text{otherwise}
          \\end{cases}, \\qquad d_t = J_t^\\top \\lambda_t .

``R = 1`` is MGDA at every step. The min-norm problem is solved exactly and verified as in
:mod:`mgda` (closed form at K = 2, quadprog QP otherwise, duality-gap check).

**What mtlkit realises of the speed-up.** In the paper the steps between recomputations need
one backward pass of ``Σ_k λ_k L_k`` instead of K; the saving comes from the training loop, not
from the weights. mtlkit's engine chooses the gradient path per *method*, not per step, so
PSMGD here (``requires = "gramian"``) still forms the Gramian every step: the directions are
the paper's, the per-step cost is MGDA's minus the QP on the reused steps. Its benefit here is
the smoother, less noisy weight sequence, not wall-clock time.

Steps are counted by calls (one per optimiser step in the trainer); a change of K forces a
recomputation. ``period = 4`` is mtlkit's default, not a value from the paper, which treats
``R`` as a hyperparameter (``R`` of the order of K gives its objective-independent
backpropagation complexity).

Properties: weighted, permutation invariant (MGDA's weights are permutation-equivariant and
the schedule does not depend on the order), positively homogeneous (the min-norm weights of
``aJ`` equal those of ``J``). Not linear under row scaling (MGDA's weights are not).
*Not* non-conflicting: only a recomputation step is guaranteed
conflict-free; reused weights may conflict with the current gradients (the kit resets before
every check, so it would only see recomputation steps; the claim is withheld on purpose).
Stateful (the weights and the step counter): :meth:`reset`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._solvers import bounded_threads
from mtlkit_plugins.aggregators.mgda import check_solver, solve

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting
from mtlkit.errors import ConfigError


@attrs.define(eq=False)
class PSMGD(GramianWeighting):
    """MGDA weights recomputed every ``period`` steps and reused in between."""

    period: int = 4
    solver: str = "qp"
    #: λ of the last recomputation (float64, CPU); None before the first step
    _weights: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)
    #: calls since the last recomputation
    _since: int = attrs.field(init=False, default=0, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"permutation_invariant", "positively_homogeneous", "weighted"})
    stateful: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        if isinstance(self.period, bool) or not isinstance(self.period, int) or self.period < 1:
            raise ConfigError(f"invalid period={self.period!r}: must be an integer >= 1 "
                              "(recompute the weights every `period` steps; 1 is MGDA)")
        check_solver(self.solver, type(self).__name__)

    def reset(self) -> None:
        self._weights, self._since = None, 0

    @bounded_threads
    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        K = G.shape[0]
        stale = self._weights is None or self._weights.numel() != K or self._since >= self.period
        if stale:
            self._weights = solve(G, self.solver)
            self._since = 0
        self._since += 1
        assert self._weights is not None
        return self._weights.clone()


@hookimpl
def register_aggregators(register):
    register("psmgd", PSMGD)
