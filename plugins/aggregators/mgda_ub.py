"""MGDA-UB: MGDA on the gradients w.r.t. the shared representation (an upper bound).

Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018,
https://arxiv.org/abs/1810.04650, §3.3: for an encoder ``z = f(x; θ_sh)``,
``‖Σ_k w_k ∇_θ L_k‖ ≤ ‖∂z/∂θ‖ ‖Σ_k w_k ∇_z L_k‖``, so minimising the right-hand factor needs
only the ``[K, r]`` representation Jacobian (one backward through the heads per task) and one
backward of ``Σ_k w_k L_k`` through the encoder.

The weighting is exactly :class:`~mtlkit_plugins.aggregators.mgda.MGDA`'s; the class declares
``gradient_level = "representation"`` so that the trainer feeds it ``∂L_k/∂z`` and
back-propagates ``Σ_k w_k L_k``. Called directly on a matrix it behaves as MGDA on that matrix.

Properties (on the matrix it is given): as MGDA. Note the guarantee on the *parameters* is only
the upper bound above (not non-conflicting in parameter space).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
from mtlkit_plugins.aggregators.mgda import MGDA

from mtlkit import hookimpl


@attrs.define(eq=False)
class MGDAUB(MGDA):
    """MGDA on the shared-representation gradients (MGDA-UB)."""

    gradient_level: ClassVar[str] = "representation"


@hookimpl
def register_aggregators(register):
    register("mgda_ub", MGDAUB)
