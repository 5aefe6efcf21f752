"""SDMGrad: stochastic direction-oriented multi-objective gradient descent.

Xiao, Ban & Ji, "Direction-oriented Multi-objective Learning: Simple and Provable Stochastic
Algorithms", NeurIPS 2023, https://arxiv.org/abs/2305.18409 (Alg. 1; reference code
OptMN-Lab/sdmgrad).

SDMGrad keeps the update close to a target direction ``g_0 = J^T w̃`` (``w̃ = 1/K``: the mean
gradient) by regularising MGDA's min-norm problem:

.. math:: \\min_{w \\in \\Delta_K} \\tfrac12 \\lVert J^\\top w + \\lambda g_0 \\rVert^2,
          \\qquad d = \\frac{J^\\top w + \\lambda g_0}{1 + \\lambda}
          = J^\\top \\frac{w + \\lambda \\tilde w}{1 + \\lambda}

The weights are not solved exactly: each training step runs ``n_iter`` projected SGD steps
with heavy-ball momentum on the normalised ``A = J_1 J_2^T / s``, ``s = (mean_k ‖g_k‖)²``,

.. math:: v \\leftarrow \\mu v + A (w + \\lambda \\tilde w), \\qquad
          w \\leftarrow \\Pi_{\\Delta_K}(w - \\beta v)

(``v = 0`` at the start of each step), warm-started from the previous step's ``w`` (``1/K`` at
the first). ``λ = 0`` is a stochastic MGDA, ``λ → ∞`` the mean.

**Single-batch form (the difference from the paper).** The paper draws independent batches
``ξ, ξ'`` for ``A = ∇F(ξ) ∇F(ξ')^T`` and ``ζ`` for ``d``, so that ``A`` is unbiased; mtlkit
gives an aggregator one mini-batch, so here ``A = J J^T / s`` and ``d`` uses the same ``J``
(TorchJD's ``SDMGradWeighting`` fed one Gramian does the same). ``E[J J^T]`` includes the
gradient covariance, a bias towards noisy tasks in ``w``.

Defaults: ``lamda = 0.3`` (the paper's multi-task experiments; the reference code's class
default is 0.6), ``n_iter = 20``, ``lr = 10`` and ``momentum = 0.5`` (reference code, as
TorchJD 0.18). LibMTL uses ``lr = 5``. The normalisation by ``s`` follows the reference code
(paper §6.1), without its ``+1e-8`` (a zero ``s`` means all-zero gradients, which never reach
here), so gradient scales from 1e-8 to 1e8 see the same problem.

Interface: a Gramian method (``requires = "gramian"``). Properties: weighted. In exact
arithmetic SDMGrad is also permutation invariant and linear under scaling (``A`` is
scale-free), but with the reference step ``lr = 10`` the inner loop is not a contraction
(``lr · λ_max(A)`` is far above 2) and 20 iterations amplify round-off: a float32 Gramian's
1e-7 relative error, or a permuted summation order, moves ``w`` by O(1) (the property kit finds
such inputs), so neither is claimed. With a step that contracts (``lr < 2/λ_max(A)``) both
hold to round-off (tested). Stateful (the warm start ``w``): :meth:`reset`; a change of K
restarts from ``1/K``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import check_range, project_simplex, to_weights

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting
from mtlkit.errors import GradientError, invalid_value


@attrs.define(eq=False)
class SDMGrad(GramianWeighting):
    """SDMGrad: MGDA weights regularised towards the mean, by warm-started projected SGD."""

    lamda: float = 0.3
    n_iter: int = 20
    lr: float = 10.0
    momentum: float = 0.5
    #: the simplex weights w of the last step (float64, CPU); None before the first step
    _w: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)

    #: only "weighted": see the module docstring for why the exact-arithmetic invariances
    #: are not claimed
    properties: ClassVar[frozenset[str]] = frozenset({"weighted"})
    stateful: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        check_range("lamda", self.lamda, 0.0, 1e6)
        check_range("lr", self.lr, 0.0, 1e6, lo_open=True)
        check_range("momentum", self.momentum, 0.0, 1.0, hi_open=True)
        if isinstance(self.n_iter, bool) or not isinstance(self.n_iter, int) \
                or not 1 <= self.n_iter <= 100_000:
            raise invalid_value("n_iter", self.n_iter, "must be an integer in [1, 100000]")

    def reset(self) -> None:
        self._w = None

    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        A = G.detach().to(device="cpu", dtype=torch.float64).numpy()
        K = A.shape[0]
        # reference code: s = (mean of the gradient norms)², negative round-off diagonals
        # clipped; s > 0 since the base class already answered an all-zero J
        s = float(np.sqrt(np.clip(np.diag(A), 0.0, None)).mean()) ** 2
        target = np.full(K, 1.0 / K)
        if not (math.isfinite(s) and bool(np.isfinite(A).all())):
            raise GradientError(f"sdmgrad: the Gramian overflowed (diagonal "
                                f"{np.diag(A).tolist()}); the gradients are too large")
        if s == 0.0:  # every norm underflowed in the Gramian's dtype: no information, the mean
            return to_weights(target)
        A = A / s
        w = target.copy() if self._w is None or self._w.numel() != K else self._w.numpy()
        v = np.zeros(K)
        for _ in range(self.n_iter):
            v = self.momentum * v + A @ (w + self.lamda * target)
            w = project_simplex(w - self.lr * v)
        self._w = to_weights(w)
        return to_weights((w + self.lamda * target) / (1.0 + self.lamda))


@hookimpl
def register_aggregators(register):
    register("sdmgrad", SDMGrad)
