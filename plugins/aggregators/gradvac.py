"""GradVac: gradient vaccine.

Wang et al., "Gradient Vaccine: Investigating and Improving Multi-task Optimization in
Massively Multilingual Models", ICLR 2021, https://arxiv.org/abs/2010.05874 (Alg. 1).

Like PCGrad, but every pair keeps an EMA target cosine ``φ̂_ij`` (initially 0) and the
gradient is moved *towards* it whenever the current cosine ``φ_ij`` is below:

.. math:: g_i \\leftarrow g_i + \\frac{\\lVert g_i \\rVert
          (\\hat\\phi_{ij}\\sqrt{1-\\phi_{ij}^2} - \\phi_{ij}\\sqrt{1-\\hat\\phi_{ij}^2})}
          {\\lVert g_j \\rVert \\sqrt{1-\\hat\\phi_{ij}^2}}\\, g_j,
          \\qquad \\hat\\phi_{ij} \\leftarrow (1-\\beta)\\hat\\phi_{ij} + \\beta\\phi_{ij}

then ``d = Σ_i g_i`` (``reduction="sum"``, as the paper and TorchJD) or the mean. Whole-model
granularity (one target per task pair); ``β = 0.01`` (paper default). Computed on the Gramian
(coefficients as in PCGrad); random visiting order from ``context["generator"]`` or ``seed``.

Stateful (the targets): call :meth:`reset` between runs. Properties: weighted, linear under
scaling (cosines are scale-free).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import (
    as_normalized_numpy,
    bounded_threads,
    check_choice,
    check_range,
    eigen_cutoff,
    make_generator,
    pick_generator,
    to_weights,
)

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting


@attrs.define(eq=False)
class GradVac(GramianWeighting):
    """Move each pair's cosine towards an EMA target (gradient vaccine)."""

    beta: float = 0.01
    reduction: str = "sum"
    seed: int = attrs.field(default=0, converter=int)
    _targets: np.ndarray | None = attrs.field(init=False, default=None, repr=False)
    _generator: torch.Generator = attrs.field(init=False, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"weighted", "positively_homogeneous"})
    stateful: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        check_range("beta", self.beta, 0.0, 1.0)
        check_choice("reduction", self.reduction, ("sum", "mean"))
        self.reset()

    def reset(self) -> None:
        self._targets = None
        self._generator = make_generator(self.seed)

    @bounded_threads
    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        A, _ = as_normalized_numpy(G)
        K = A.shape[0]
        if self._targets is None or self._targets.shape != (K, K):
            self._targets = np.zeros((K, K))
        targets = self._targets
        gen = pick_generator(context, self._generator)
        # a zero row comes out of the PSD repair with a round-off diagonal, not 0: treat
        # diagonals below the dtype's cut-off as zero (else the result varies with the scale)
        diag = np.diag(A).copy()
        diag[diag <= eigen_cutoff(G.dtype, K) * float(diag.max())] = 0.0
        norms = np.sqrt(diag)
        total = np.zeros(K)
        for i in range(K):
            c = np.zeros(K)
            c[i] = 1.0
            others = [j for j in range(K) if j != i]
            norm_i = math.sqrt(max(float(c @ A @ c), 0.0))  # ‖c^T J‖; changes only with c
            for t in torch.randperm(K - 1, generator=gen, device=gen.device).tolist():
                j = others[t]
                if norm_i <= norms.max() * 1e-8 or norms[j] == 0.0:
                    continue
                phi = float(np.clip(c @ A[:, j] / (norm_i * norms[j]), -1.0, 1.0))
                target = targets[i, j]
                if phi < target:
                    coef = norm_i * (target * math.sqrt(1 - phi**2)
                                     - phi * math.sqrt(1 - target**2))
                    c[j] += coef / (norms[j] * math.sqrt(max(1 - target**2, 1e-16)))
                    norm_i = math.sqrt(max(float(c @ A @ c), 0.0))
                targets[i, j] = (1 - self.beta) * target + self.beta * phi
            total += c
        if self.reduction == "mean":
            total /= K
        return to_weights(total)


@hookimpl
def register_aggregators(register):
    register("gradvac", GradVac)
