"""GradOPS: gradient deconfliction via orthogonal projections onto subspaces.

Zhu et al., WSDM 2025, https://arxiv.org/abs/2503.03438 (earlier ICLR 2023 submission,
OpenReview tF_iDkYA_Z5).

Projection (verified from the paper's abstract, Fig. 1 and summaries): every task gradient is
projected onto the orthogonal complement of the span of the *other* task gradients,

.. math:: g'_i = g_i - P_{S_i} g_i, \\qquad S_i = \\mathrm{span}\\{g_j : j \\ne i\\},

so ``g'_i · g_j = 0`` for ``j != i`` and, for ``d = Σ_i w_i g'_i`` with ``w >= 0``,
``d · g_j = w_j ‖g'_j‖² >= 0``: no task conflicts with the update ("strongly non-conflicting"),
whatever the processing order (there is none), and one scalar α trades tasks off.

Computed on the Gramian: ``g'_i = c_i^T J`` with ``c_i = e_i - [G_{-i,-i}^+ G_{-i,i}]`` (the
least-squares coefficients of ``g_i`` on the others; exact in exact arithmetic, equivalent to
Gram-Schmidt/QR of the other rows). The pseudo-inverse uses an eigenvalue cut-off relative to
the largest eigenvalue, so duplicated, collinear or otherwise dependent rows are handled: a
``g_i`` inside the span of the others gives ``g'_i = 0`` (its relative residual
``‖g'_i‖² / ‖g_i‖²`` is below ``tol``) and receives weight 0.

Weighting rule -- **the library's reading, not verified against the paper's text** (the full
text was not accessible; see ``docs/aggregators.md``): with the α = 0 direction
``D = Σ_i g'_i`` and ``R_i = cos(g_i, D) = ‖g'_i‖² / (‖g_i‖ ‖D‖)`` (how well task ``i`` is
served),

.. math:: w_i = \\frac{R_i^{\\alpha}}{\\sum_{j: R_j > 0} R_j^{\\alpha}} \\;(R_i > 0),
          \\qquad w_i = 0 \\;(g'_i = 0), \\qquad d = \\sum_i w_i g'_i

α = 0 is the mean of the projected gradients; α < 0 (the paper reports α = -3) up-weights the
least-served tasks, α > 0 the best-served.

Properties: non-conflicting, permutation invariant, linear under scaling, weighted.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import as_normalized_numpy, check_range, to_weights

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting


def orthogonal_coefficients(A: np.ndarray, tol: float) -> np.ndarray:
    """Row ``i``: coefficients ``c_i`` of ``g'_i`` (the part of ``g_i`` orthogonal to the
    other rows) in terms of the rows; zero where the relative residual is below ``tol``."""
    K = A.shape[0]
    C = np.zeros((K, K))
    for i in range(K):
        others = np.array([j for j in range(K) if j != i])
        B = A[np.ix_(others, others)]
        lam, V = np.linalg.eigh(B)
        keep = lam > max(lam.max(), 0.0) * K * 1e-12
        coef = V[:, keep] @ ((V[:, keep].T @ A[others, i]) / lam[keep]) if keep.any() \
            else np.zeros(K - 1)
        c = np.zeros(K)
        c[i] = 1.0
        c[others] = -coef
        residual = float(c @ A @ c)
        if A[i, i] <= 0 or residual <= tol * A[i, i]:
            continue  # g_i is (numerically) in the span of the others: g'_i = 0
        C[i] = c
    return C


@attrs.define(eq=False)
class GradOPS(GramianWeighting):
    """Project each task gradient off the span of the others, then re-weight with α."""

    alpha: float = 0.0
    tol: float = 1e-10

    properties: ClassVar[frozenset[str]] = frozenset(
        {"non_conflicting", "permutation_invariant", "linear_under_scaling", "weighted"})

    def __attrs_post_init__(self) -> None:
        check_range("alpha", self.alpha, -100.0, 100.0)
        check_range("tol", self.tol, 0.0, 1.0, lo_open=True, hi_open=True)

    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        A, _ = as_normalized_numpy(G)
        K = A.shape[0]
        # A float32 Gramian carries ~1e-7 relative error: residuals below that are noise.
        tol = max(self.tol, 1e-6) if G.dtype == torch.float32 else self.tol
        C = orthogonal_coefficients(A, tol)
        sq = np.einsum("ij,jk,ik->i", C, A, C)  # ‖g'_i‖²
        served = sq > 0
        if not served.any():
            return torch.zeros(K, dtype=torch.float64)
        D = C.sum(axis=0)
        D_norm = float(np.sqrt(max(float(D @ A @ D), 0.0)))
        R = np.zeros(K)
        R[served] = sq[served] / (np.sqrt(np.diag(A)[served]) * max(D_norm, 1e-300))
        w = np.zeros(K)
        if self.alpha == 0:
            w[served] = 1.0
        else:
            # log-domain for R^α: α = -3 on R ~ 1e-6 must not overflow
            logs = self.alpha * np.log(np.maximum(R[served], 1e-300))
            w[served] = np.exp(logs - logs.max())
        w /= w.sum()
        return to_weights(w @ C)


@hookimpl
def register_aggregators(register):
    register("gradops", GradOPS)
