"""DualProj: the mean gradient projected onto the dual cone of the task gradients.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024,
https://arxiv.org/abs/2406.16232 (the DualProj baseline, TorchJD's ``DualProj``); the projection
is the one of GEM, Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning",
NeurIPS 2017, https://arxiv.org/abs/1706.08840, Eq. 10-11, applied to the mean gradient.

.. math:: d = \\pi_C(\\bar g) = \\arg\\min_{x \\,:\\, J x \\ge 0} \\lVert x - \\bar g \\rVert^2,
          \\qquad \\bar g = \\frac1K \\sum_k g_k, \\qquad C = \\{x : J x \\ge 0\\}

Why: the smallest change of the mean step that increases no task's loss to first order. By
Prop. 1 of Quinton & Rey (GEM's dual) the projection is ``d = J^T w`` with

.. math:: w = \\arg\\min_{w \\ge u} w^\\top G w, \\qquad u = \\tfrac1K \\mathbf 1,

a K-dimensional QP on the Gramian, so DualProj is a
:class:`~mtlkit.aggregation.GramianWeighting`. It is solved exactly with quadprog on the
normalised Gramian with the tiny ridge ``1e-10`` that UPGrad uses (``1e-6`` for a float32
Gramian, at its precision; shared helper
``dual_cone_projections``); rows of zero gradients are left out of the QP (their constraint always
holds). When ``G u >= 0`` the mean is already in the cone and ``w = u`` exactly.
Where UPGrad averages the projections of the K gradients, DualProj projects their average once:
one QP instead of K.

Differences with TorchJD: TorchJD normalises the Gramian with ``norm_eps = 1e-4`` and adds
``reg_eps = 1e-4`` to its diagonal, which moves the answer by ~1e-4 relative; here the ridge is
1e-10 in float64 (the exact projection to ~1e-5 relative, see the tests). TorchJD's
``pref_vector`` (other weights ``u`` than the mean) is not offered: with it the method is no
longer permutation invariant. LibMTL has no DualProj.

Properties: non-conflicting (``d`` is in ``C``), permutation invariant, positively homogeneous,
weighted, and equal to the mean when no pair conflicts (then ``G u >= 0``). Not linear under
row-wise scaling (the projection of a sum is not the sum of projections).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import (
    RIDGE,
    as_normalized_numpy,
    bounded_threads,
    dual_cone_projections,
    require_quadprog,
    to_weights,
)

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting


class DualProj(GramianWeighting):
    """Projection of the mean gradient onto the dual cone ``{x : J x >= 0}``."""

    properties: ClassVar[frozenset[str]] = frozenset(
        {"non_conflicting", "permutation_invariant", "positively_homogeneous", "weighted",
         "conflict_only"})

    def __init__(self) -> None:
        require_quadprog("DualProj")

    @bounded_threads
    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        K = G.shape[0]
        w = np.full(K, 1.0 / K)
        # A zero gradient's constraint (0 >= 0) always holds: leave its row out. Kept, the PSD
        # repair would give it ~1e-17 noise, and the QP would pile weight ~1e15 on it to
        # "satisfy" a noise-sized violation, distorting every other weight.
        live = (torch.diagonal(G) > 0).cpu().numpy()
        A, _ = as_normalized_numpy(G[live][:, live] if not live.all() else G)
        # When the mean is in the cone (no conflict) it is its own projection: w stays 1/K.
        # Ridge at the Gramian's precision: float32 round-off (~1e-7 relative) would otherwise
        # let near-null directions of G (opposite collinear gradients) take weights ~1e6 whose
        # cancellation in w^T J amplifies that round-off; float64 keeps UPGrad's 1e-10.
        ridge = RIDGE if G.dtype == torch.float64 else 1e-6
        w[live] = dual_cone_projections(A, w[live][None], ridge)[0]
        return to_weights(w)


@hookimpl
def register_aggregators(register):
    register("dualproj", DualProj)
