"""Aligned-MTL: align the task gradients to an orthogonal, equally scaled system.

Senushkin et al., "Independent Component Alignment for Multi-Task Learning", CVPR 2023,
https://arxiv.org/abs/2305.19000 (Alg. 1).

With the eigendecomposition ``G = V Λ V^T`` restricted to its rank ``r`` (relative cut-off),

.. math:: B = \\sigma\\, V \\Lambda^{-1/2} V^\\top, \\qquad d = (B\\,\\mathbf{p})^\\top J

so the aligned gradients ``B J`` are orthogonal with equal norms ``σ``. ``p`` is the preference
vector (uniform ``1/K``). ``scale_mode`` chooses ``σ²``: ``"min"`` the smallest kept
eigenvalue (paper default), ``"median"``, or ``"rmse"`` their mean.

Properties: permutation invariant, linear under scaling (``B`` is scale-free), weighted.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import (
    as_normalized_eigh,
    bounded_threads,
    check_choice,
    eigen_cutoff,
    to_weights,
)

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting


@attrs.define(eq=False)
class AlignedMTL(GramianWeighting):
    """Aligned-MTL: condition the gradient system, then average."""

    scale_mode: str = "min"

    properties: ClassVar[frozenset[str]] = frozenset(
        {"permutation_invariant", "positively_homogeneous", "weighted"})

    def __attrs_post_init__(self) -> None:
        check_choice("scale_mode", self.scale_mode, ("min", "median", "rmse"))

    @bounded_threads
    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        A, _, lam, V = as_normalized_eigh(G)
        K = A.shape[0]
        keep = lam > lam.max() * eigen_cutoff(G.dtype, K)
        if not keep.any():
            return torch.zeros(K, dtype=torch.float64)
        lam, V = lam[keep], V[:, keep]
        if self.scale_mode == "min":
            sigma2 = lam.min()
        elif self.scale_mode == "median":
            sigma2 = float(np.median(lam))
        else:
            sigma2 = lam.mean()
        B = np.sqrt(sigma2) * (V / np.sqrt(lam)) @ V.T
        return to_weights(B @ np.full(K, 1.0 / K))


@hookimpl
def register_aggregators(register):
    register("aligned_mtl", AlignedMTL)
