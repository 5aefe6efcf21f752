"""MGDA: the min-norm point of the convex hull of the task gradients.

Désidéri, "Multiple-gradient descent algorithm (MGDA) for multiobjective optimization", 2012;
Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018,
https://arxiv.org/abs/1810.04650.

.. math:: w^* = \\arg\\min_{w \\in \\Delta_K} \\lVert \\textstyle\\sum_k w_k g_k \\rVert^2
          = \\arg\\min_{w \\in \\Delta_K} w^\\top G w, \\qquad d = \\sum_k w^*_k g_k

Solved exactly on the normalised Gramian ``G / mean(diag G)``:

* ``K = 2``: closed form ``γ = clip((G22 - G12)/(G11 + G22 - 2 G12), 0, 1)``;
* ``K > 2``: ``solver="qp"`` (default) a dense QP with quadprog; ``solver="frank_wolfe"`` the
  paper's Frank-Wolfe with exact line search (no extra dependency).

Every answer is checked by its duality gap ``w^T G w - min_k (G w)_k``; an unconverged answer
raises :class:`~mtlkit.errors.GradientError` instead of being used silently.

Properties: non-conflicting (``(G w^*)_k >= w^{*T} G w^* >= 0`` by optimality),
permutation invariant, positively homogeneous, weighted. ``d = 0`` exactly at Pareto-stationary
points (``0`` in the convex hull).
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._solvers import (
    as_normalized_numpy,
    bounded_threads,
    check_choice,
    min_norm_weights,
    require_quadprog,
    to_weights,
)

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting


def check_solver(solver: str, who: str) -> None:
    """Validate ``solver`` and, for ``"qp"``, that quadprog is installed (shared with PSMGD)."""
    check_choice("solver", solver, ("qp", "frank_wolfe"))
    if solver == "qp":
        require_quadprog(who)


def solve(G: torch.Tensor, solver: str) -> torch.Tensor:
    """MGDA's verified min-norm weights of the Gramian ``G`` (float64, CPU); PSMGD reuses them
    between its recomputations, so both methods go through this one solve."""
    A, _ = as_normalized_numpy(G)
    return to_weights(min_norm_weights(A, solver))


@attrs.define(eq=False)
class MGDA(GramianWeighting):
    """Min-norm point of the convex hull of the task gradients (exact, verified)."""

    solver: str = "qp"

    properties: ClassVar[frozenset[str]] = frozenset(
        {"non_conflicting", "permutation_invariant", "positively_homogeneous", "weighted"})

    def __attrs_post_init__(self) -> None:
        check_solver(self.solver, type(self).__name__)

    @bounded_threads
    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return solve(G, self.solver)


@hookimpl
def register_aggregators(register):
    register("mgda", MGDA)
