"""IMTL-G: impartial multi-task learning, gradient part.

Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021,
https://openreview.net/forum?id=IMPnRXEWpvr.

``d = Σ_k α_k g_k`` with ``Σ_k α_k = 1`` has equal projections on every unit gradient
``u_k = g_k / ‖g_k‖``: ``d·u_1 = … = d·u_K``. In Gramian form, ``G α = t·ν`` with
``ν_k = ‖g_k‖``, hence

.. math:: \\alpha = \\frac{G^{+} \\nu}{\\mathbf{1}^\\top G^{+} \\nu}

(the paper's closed form ``α_{2:K} = g_1 U^T (D U^T)^{-1}`` in K x K terms). ``G^+`` is the
pseudo-inverse of the normalised Gramian with a relative eigenvalue cut-off, so duplicated or
collinear rows are handled; when ``1^T G^+ ν`` vanishes the direction is zero.

Properties: permutation invariant, positively homogeneous, weighted.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import (
    as_normalized_eigh,
    bounded_threads,
    eigen_cutoff,
    to_weights,
)

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting


class IMTLG(GramianWeighting):
    """IMTL-G: equal projection of the update on every task's unit gradient."""

    properties: ClassVar[frozenset[str]] = frozenset(
        {"permutation_invariant", "positively_homogeneous", "weighted"})

    @bounded_threads
    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        A, _, lam, V = as_normalized_eigh(G)
        nu = np.sqrt(np.clip(np.diag(A), 0.0, None))
        keep = lam > lam.max() * eigen_cutoff(G.dtype, A.shape[0])
        v = V[:, keep] @ ((V[:, keep].T @ nu) / lam[keep])
        total = float(v.sum())
        if abs(total) <= 1e-12 * float(np.abs(v).sum() + 1e-300):
            return torch.zeros(A.shape[0], dtype=torch.float64)
        return to_weights(v / total)


@hookimpl
def register_aggregators(register):
    register("imtl_g", IMTLG)
