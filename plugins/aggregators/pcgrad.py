"""PCGrad: projecting conflicting gradients.

Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020,
https://arxiv.org/abs/2001.06782 (Alg. 1).

For every task ``i``, start from ``g_i^PC = g_i`` and visit the other tasks ``j`` in a random
order; whenever ``g_i^PC · g_j < 0`` remove the conflicting component,

.. math:: g_i^{PC} \\leftarrow g_i^{PC} - \\frac{g_i^{PC} \\cdot g_j}{\\lVert g_j \\rVert^2} g_j,

then ``d = Σ_i g_i^PC`` (``reduction="sum"``, the paper's) or their mean (``"mean"``).

Computed on the K x K Gramian only: every ``g_i^PC`` is tracked as coefficients ``c_i`` with
``g_i^PC = c_i^T J``, so its dot product with ``g_j`` is ``c_i^T G e_j``; the direction is then
one weighted combination ``(Σ_i c_i)^T J``. Random orders come from ``context["generator"]``
when given, else from the aggregator's own generator seeded with ``seed``.

Properties: weighted, linear under scaling; with ``reduction="mean"`` also equal to the mean
when no pair conflicts. Not permutation invariant (random order) and not non-conflicting for
K > 2 (the GradOPS paper's counter-example).
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import (
    as_normalized_numpy,
    bounded_threads,
    check_choice,
    eigen_cutoff,
    make_generator,
    pick_generator,
    to_weights,
)

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting


@attrs.define(eq=False)
class PCGrad(GramianWeighting):
    """Project each task gradient off the others it conflicts with, in random order."""

    reduction: str = "sum"
    seed: int = attrs.field(default=0, converter=int)
    _generator: torch.Generator = attrs.field(init=False, repr=False)

    stateful: ClassVar[bool] = True  # its own generator advances between calls

    def __attrs_post_init__(self) -> None:
        check_choice("reduction", self.reduction, ("sum", "mean"))
        self.reset()

    @property
    def properties(self) -> frozenset[str]:  # type: ignore[override]
        props = {"weighted", "positively_homogeneous"}
        if self.reduction == "mean":
            props.add("conflict_only")
        return frozenset(props)

    def reset(self) -> None:
        self._generator = make_generator(self.seed)

    @bounded_threads
    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        A, _ = as_normalized_numpy(G)
        K = A.shape[0]
        gen = pick_generator(context, self._generator)
        # A zero row comes out of the Gramian's PSD repair as a round-off diagonal (~1e-17),
        # not 0: dividing by it would blow its coefficient up (and vary with the input scale).
        floor = eigen_cutoff(G.dtype, K) * float(np.max(np.diag(A)))
        total = np.zeros(K)
        for i in range(K):
            c = np.zeros(K)
            c[i] = 1.0
            others = [j for j in range(K) if j != i]
            order = torch.randperm(K - 1, generator=gen, device=gen.device).tolist()
            for t in order:
                j = others[t]
                dot = float(c @ A[:, j])
                if dot < 0.0 and A[j, j] > floor:
                    c[j] -= dot / A[j, j]
            total += c
        if self.reduction == "mean":
            total /= K
        return to_weights(total)


@hookimpl
def register_aggregators(register):
    register("pcgrad", PCGrad)
