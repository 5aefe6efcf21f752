"""GradOPS: gradient deconfliction via orthogonal projections onto subspaces.

Zhu et al., WSDM 2025, https://arxiv.org/abs/2503.03438 (earlier ICLR 2023 submission,
OpenReview tF_iDkYA_Z5).

What was checked against the paper, and what could not be. The stored copies of the paper
that could be consulted for this module (the ICLR 2023 submission's text, OpenReview
tF_iDkYA_Z5, and arXiv 2503.03438v1) were reachable only through their opening -- abstract,
Sec. 1 and the Fig. 1 caption -- not through the method section; the equations for ``R_i``,
its normalisation and α below could therefore **not** be compared with the paper's equations,
and no equation number is cited for them. Established from that text:

* Projection (abstract, Sec. 1, Fig. 1 caption): every task gradient is projected onto the
  orthogonal complement of the span of the *other* task gradients -- the GradOPS-modified
  ``g'_1`` "is orthogonal to S = span{g_2, g_3} with the conflicting part on S removed" -- so
  that neither any ``g'_i`` nor their aggregate conflicts with any original ``g_j``:

  .. math:: g'_i = g_i - P_{S_i} g_i, \\qquad S_i = \\mathrm{span}\\{g_j : j \\ne i\\}.

  The projection is applied to every task at every step, whether or not ``g_i`` currently
  conflicts with a ``g_j`` (Fig. 1 projects all three gradients); ``g'_i · g_j = 0`` for
  ``j != i`` and, for ``d = Σ_i w_i g'_i`` with ``w >= 0``, ``d · g_j = w_j ‖g'_j‖² >= 0``.
* Trade-off: one scalar hyper-parameter α re-weights the projected gradients; the paper's
  headline setting is α = -3 ("GradOPS(α=-3)"), and a fixed-weight variant "GradOPS-static"
  is compared with it. The sign convention below (α < 0 favours the least-served tasks) is the
  library's reading of that setting, not a quoted equation.

Computed on the Gramian: ``g'_i = c_i^T J`` with ``c_i = e_i - [G_{-i,-i}^+ G_{-i,i}]`` (the
least-squares coefficients of ``g_i`` on the others; exact in exact arithmetic, equivalent to
Gram-Schmidt/QR of the other rows). The pseudo-inverse uses an eigenvalue cut-off relative to
the largest eigenvalue, so duplicated, collinear or otherwise dependent rows are handled: a
``g_i`` inside the span of the others gives ``g'_i = 0`` (its relative residual
``‖g'_i‖² / ‖g_i‖²`` is below ``tol``) and receives weight 0.

Weighting rule -- **the library's reading; not checked against the paper's equations** (see
above): with the α = 0 direction ``D = Σ_i g'_i`` and ``R_i = cos(g_i, D) = ‖g'_i‖² / (‖g_i‖
‖D‖)`` (how well task ``i`` is served),

.. math:: w_i = \\frac{|S|}{K}\\,\\frac{R_i^{\\alpha}}{\\sum_{j \\in S} R_j^{\\alpha}}
          \\;(i \\in S = \\{i: g'_i \\ne 0\\}), \\qquad w_i = 0 \\;(g'_i = 0),
          \\qquad d = \\sum_i w_i g'_i

α = 0 is the mean of the K projected gradients; α < 0 up-weights the least-served tasks,
α > 0 the best-served. Details the consulted text does not settle: whether ``R_i`` is this
cosine or another ratio, whether the weights are normalised to sum to 1, to K or to ``|S|/K``
as here, and whether ``D`` or the plain mean of the ``g_i`` serves as reference. A
consequence worth knowing: with α < 0 a task that is nearly in the span of the others (tiny
``g'_i``, tiny ``R_i``) takes most of the weight and the update becomes small.

Properties: non-conflicting, permutation invariant, positively homogeneous, weighted.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import (
    as_normalized_eigh,
    bounded_threads,
    check_range,
    eigen_cutoff,
    to_weights,
)

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting


def orthogonal_coefficients(A: np.ndarray, tol: float,
                            eig: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Row ``i``: coefficients ``c_i`` of ``g'_i`` (the part of ``g_i`` orthogonal to the
    other rows) in terms of the rows; zero where ``g_i`` is (numerically) in their span.

    One eigendecomposition ``A = V Λ V^T`` instead of K least-squares solves. Eigenvalues below
    ``max(tol, K·1e-12) · λ_max`` span the null space ``N`` (the dependencies among rows); a row
    with a component in ``N`` is a combination of the others, so ``g'_i = 0``. For any other
    row, ``v = J^T A^+ e_i`` satisfies ``v·g_j = (A A^+ e_i)_j = δ_ij`` (``e_i`` is in the range
    of ``A``), so ``v`` is orthogonal to the others and ``g'_i = v / ‖v‖² = J^T A^+ e_i /
    (A^+)_{ii}``, with ``‖g'_i‖² = 1 / (A^+)_{ii}``. ``eig``: ``eigh(A)`` if already known.
    """
    K = A.shape[0]
    lam, V = np.linalg.eigh(A) if eig is None else eig
    top = max(float(lam.max()), 0.0)
    keep = lam > top * max(tol, K * 1e-12)
    C = np.zeros((K, K))
    if not keep.any():
        return C
    null_part = (V[:, ~keep] ** 2).sum(axis=1)  # ‖P_N e_i‖²
    pinv = (V[:, keep] / lam[keep]) @ V[:, keep].T
    diag = np.diag(A)
    for i in range(K):
        if diag[i] <= 1e-12 or null_part[i] > 1e-6 or pinv[i, i] <= 0:
            continue  # zero row, or g_i in the span of the others: g'_i = 0
        if 1.0 / pinv[i, i] <= tol * diag[i]:
            continue  # relative residual below tol
        C[i] = pinv[i] / pinv[i, i]
    return C


@attrs.define(eq=False)
class GradOPS(GramianWeighting):
    """Project each task gradient off the span of the others, then re-weight with α."""

    alpha: float = 0.0
    tol: float = 1e-10

    properties: ClassVar[frozenset[str]] = frozenset(
        {"non_conflicting", "permutation_invariant", "positively_homogeneous", "weighted"})

    def __attrs_post_init__(self) -> None:
        check_range("alpha", self.alpha, -100.0, 100.0)
        check_range("tol", self.tol, 0.0, 1.0, lo_open=True, hi_open=True)

    @bounded_threads
    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        A, _, lam, V = as_normalized_eigh(G)
        K = A.shape[0]
        # A float32 Gramian carries ~1e-7..1e-5 relative error: residuals below that are noise.
        tol = max(self.tol, eigen_cutoff(G.dtype, K))
        C = orthogonal_coefficients(A, tol, (lam, V))
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
            w[served] = 1.0 / K  # the mean of all K projections (vanished ones add 0)
        else:
            # log-domain for R^α: α = -3 on R ~ 1e-6 must not overflow. The served tasks share
            # |S|/K of the total weight, so that α -> 0 recovers the mean of the projections.
            logs = self.alpha * np.log(np.maximum(R[served], 1e-300))
            share = np.exp(logs - logs.max())
            w[served] = share / share.sum() * served.sum() / K
        return to_weights(w @ C)


@hookimpl
def register_aggregators(register):
    register("gradops", GradOPS)
