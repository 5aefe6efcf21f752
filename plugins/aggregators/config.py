"""ConFIG: conflict-free inverse gradients.

Liu, Chu & Thuerey, "ConFIG: Towards Conflict-free Training of Physics Informed Neural
Networks", ICLR 2025, https://arxiv.org/abs/2408.11104, Eq. 2.

With ``U`` the matrix of unit task gradients (rows ``g_k / ‖g_k‖``) and ``U^+`` its
pseudo-inverse,

.. math:: u = U^{+} \\mathbf 1_K, \\qquad \\hat u = u / \\lVert u \\rVert, \\qquad
          d = \\Big(\\sum_k g_k^\\top \\hat u\\Big)\\, \\hat u .

Why: when the rows are linearly independent, ``U u = 1``: ``d`` makes the *same* angle with
every task gradient (``cos(g_k, d)`` equal and positive for all ``k``), so no task dominates
the direction whatever the gradient magnitudes; its length is the sum of the projections of
the gradients on it. For linearly dependent rows (``K > n`` or collinear gradients) ``u`` is
the least-squares solution and equal angles, hence non-conflict, are no longer guaranteed.

Gramian form (why it is a :class:`~mtlkit.aggregation.GramianWeighting`): with
``D = diag(‖g_k‖)`` and the cosine matrix ``C = D^{-1} G D^{-1} = U U^T``,
``u = U^T C^+ 1 = J^T D^{-1} C^+ 1``, ``‖u‖² = 1^T C^+ 1`` and ``Σ_k g_k·u = 1^T G D^{-1} C^+ 1``,
so ``d = w^T J`` with ``w = (Σ_k g_k·\\hat u / ‖u‖) D^{-1} C^+ 1``. ``C^+`` drops eigenvalues below
the Gramian's precision (:func:`~mtlkit_plugins.aggregators._solvers.eigen_cutoff`: ``1e-5``
relative in float32, ``K·1e-12`` in float64), where TorchJD's ``pinv`` of the ``K x n`` unit
matrix keeps singular values down to ``max(K, n)·eps``: the two differ only for rows that are
linearly dependent to within that precision. A zero gradient has a zero unit row, as in TorchJD
and the official code. ``u = 0`` (e.g. two opposite tasks) gives ``d = 0``.

Not offered: TorchJD's ``pref_vector`` (a weighted target instead of ``1``, which breaks
permutation invariance) and the paper's momentum variant M-ConFIG. LibMTL has no ConFIG.

Properties: permutation invariant, positively homogeneous, linear under scaling (row-wise:
``U`` and ``\\hat u`` do not change when a row is scaled, and the length is linear in the rows),
weighted. Non-conflicting only for linearly independent rows, so not claimed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import (
    bounded_threads,
    eigen_cutoff,
    to_weights,
)

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting


class ConFIG(GramianWeighting):
    """The direction at equal angles to all task gradients, with the summed projected length."""

    properties: ClassVar[frozenset[str]] = frozenset(
        {"permutation_invariant", "positively_homogeneous", "linear_under_scaling", "weighted"})

    @bounded_threads
    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        # No PSD repair (as_normalized_numpy): clipping G's negative round-off eigenvalues moves
        # every entry by ~eps·max‖g‖², which 1/(‖g_i‖ ‖g_j‖) would amplify for a small row;
        # the round-off of a dot product itself is relative to ‖g_i‖ ‖g_j‖ and stays so in C.
        # Normalising by the mean diagonal keeps huge and tiny scales in range (w is scale-free).
        A = G.detach().to(device="cpu", dtype=torch.float64).numpy()
        A = 0.5 * (A + A.T)
        K = A.shape[0]
        sq = np.diag(A) / max(float(np.mean(np.diag(A))), 1e-300)
        A = A / max(float(np.mean(np.diag(A))), 1e-300)
        # A zero gradient has a zero unit row. Without the repair an exactly zero row has an
        # exactly zero diagonal, and a small non-zero row keeps a direction as accurate as any.
        live = sq > 0.0
        norms = np.where(live, np.sqrt(np.maximum(sq, 0.0)), 0.0)
        inv = np.divide(1.0, norms, out=np.zeros(K), where=live)
        C = A * np.outer(inv, inv)
        lam, V = np.linalg.eigh(0.5 * (C + C.T))
        keep = lam > eigen_cutoff(G.dtype, K) * max(float(lam.max()), 0.0)
        if not bool(keep.any()):
            return to_weights(np.zeros(K))
        Vk = V[:, keep]
        c = Vk.T @ np.ones(K)  # 1 in the eigenbasis of range(C)
        # u = U^T C^+ 1 vanishes iff 1 is orthogonal to range(C) (e.g. g and -g); decided at
        # the precision of the eigenvectors, not by a ratio of two round-off-sized numbers
        if float(c @ c) <= eigen_cutoff(G.dtype, K) * K:
            return to_weights(np.zeros(K))
        v = Vk @ (c / lam[keep])  # C^+ 1
        u_norm = float(np.sqrt(c @ (c / lam[keep])))  # ‖u‖² = 1^T C^+ 1
        # Σ_k g_k·û = Σ_k ‖g_k‖ (C C^+ 1)_k / ‖u‖, C C^+ 1 the projection of 1 on range(C)
        length = float(norms @ (Vk @ c)) / u_norm
        return to_weights(length / u_norm * inv * v)


@hookimpl
def register_aggregators(register):
    register("config", ConFIG)
