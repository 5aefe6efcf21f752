"""UPGrad: unconflicting projection of gradients.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024,
https://arxiv.org/abs/2406.16232.

Each task gradient is projected onto the dual cone ``C = {x : J x >= 0}`` of the rows and the
projections are averaged:

.. math:: d = \\frac{1}{K} \\sum_k \\pi_C(g_k), \\qquad
          \\pi_C(g_k) = J^\\top w^{(k)},\\;
          w^{(k)} = \\arg\\min_{w \\ge e_k} w^\\top G w

(Prop. 1 of the paper: the projection's weights solve a K-dimensional QP on the Gramian). Each
QP is solved with quadprog on the normalised Gramian (tiny ridge ``1e-10``).

Properties: non-conflicting, permutation invariant, positively homogeneous, weighted, and equal
to the mean when no pair conflicts (then every ``g_k`` is already in ``C``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import (
    as_normalized_numpy,
    bounded_threads,
    dual_cone_projections,
    require_quadprog,
    to_weights,
)

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting


class UPGrad(GramianWeighting):
    """Mean of the projections of the task gradients onto the dual cone of the rows."""

    properties: ClassVar[frozenset[str]] = frozenset(
        {"non_conflicting", "permutation_invariant", "positively_homogeneous", "weighted",
         "conflict_only"})

    def __init__(self) -> None:
        require_quadprog("UPGrad")

    @bounded_threads
    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        A, _ = as_normalized_numpy(G)
        K = A.shape[0]
        w = np.zeros(K)
        # Without any conflict every g_k is in the cone and w is exactly the mean's 1/K.
        for w_k in dual_cone_projections(A, np.eye(K)):
            w += w_k
        return to_weights(w / K)


@hookimpl
def register_aggregators(register):
    register("upgrad", UPGrad)
