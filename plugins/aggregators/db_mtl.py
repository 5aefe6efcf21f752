"""DB-MTL: dual balancing of loss scales and gradient magnitudes.

Lin, Jiang, Ye, Zhang, Wu, Zhang & Kwok, "Dual-Balancing for Multi-Task Learning", 2023,
https://arxiv.org/abs/2308.12029 (Alg. 1; reference implementation LibMTL ``DB_MTL``, by the
same authors).

Two balancing steps:

* **loss scale**: each task is trained on ``log(L_k + ε)``, whose gradient is
  ``g_k / (L_k + ε)``; a task's loss scale no longer sets its gradient scale;
* **gradient magnitude**: an exponential moving average ``ĝ_k`` of those gradients is rescaled
  so that every task gets the largest norm,

.. math:: \\hat g_k \\leftarrow \\beta_t \\hat g_k + (1 - \\beta_t)\\,\\frac{g_k}{L_k + \\epsilon},
          \\quad \\beta_t = \\beta / t^{\\sigma}, \\qquad
          d = \\sum_k \\frac{\\max_j \\lVert \\hat g_j \\rVert}{\\lVert \\hat g_k \\rVert}\\,
          \\hat g_k

(``ĝ = 0`` initially, ``t = 1, 2, …`` counts the calls since :meth:`reset`). Scaling to the
*maximum* norm (not the mean or minimum) is the paper's choice: no task's update shrinks.
Defaults ``beta = 0.9``, ``beta_sigma = 0``, ``eps = 1e-8`` are LibMTL's (the authors'); the
paper treats ``β`` and ``σ`` as hyper-parameters. LibMTL divides by ``‖ĝ_k‖ + 1e-8``; here a
zero ``ĝ_k`` gets factor 0 (it contributes nothing either way) and no ``+1e-8``, so gradient
scales down to 1e-8 keep the exact balance. TorchJD 0.18 does not ship DB-MTL.

Interface: needs the full Jacobian and ``context["losses"]`` (positive: ``log`` of a negative
loss is undefined). The EMA ``ĝ`` is one extra ``K x n`` buffer in ``J``'s dtype and device;
when the number of tasks or trainable coordinates changes (a new mask) it restarts from 0.

Properties: permutation invariant, positively homogeneous (``a J`` scales every ``ĝ_k`` by
``a``; the factors are ratios of norms). Not weighted across steps (``ĝ`` mixes earlier
Jacobians), not linear under scaling (the norm ratios are not linear in a row's scale).
Stateful (``ĝ``, ``t``): :meth:`reset`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from mtlkit_plugins.aggregators._solvers import check_range, losses_vector

from mtlkit import hookimpl
from mtlkit.aggregation import Aggregator
from mtlkit.errors import ConfigError, GradientError


@attrs.define(eq=False)
class DBMTL(Aggregator):
    """DB-MTL: log-loss gradients, EMA, every task rescaled to the largest EMA norm."""

    beta: float = 0.9
    beta_sigma: float = 0.0
    eps: float = 1e-8
    #: ĝ: the EMA of the log-loss gradients ([K, n], J's dtype and device)
    _buffer: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)
    #: t: calls since reset
    _t: int = attrs.field(init=False, default=0, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset(
        {"permutation_invariant", "positively_homogeneous"})
    stateful: ClassVar[bool] = True
    #: context read besides J
    context_keys: ClassVar[frozenset[str]] = frozenset({"losses"})

    def __attrs_post_init__(self) -> None:
        check_range("beta", self.beta, 0.0, 1.0, hi_open=True)
        check_range("beta_sigma", self.beta_sigma, 0.0, 10.0)
        check_range("eps", self.eps, 0.0, 1.0)

    def reset(self) -> None:
        self._buffer = None
        self._t = 0

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        losses = context.get("losses")
        if losses is None:
            raise ConfigError("db_mtl needs the task losses in its context")
        L = losses_vector(losses, J.shape[0], "db_mtl")
        if bool((L + self.eps <= 0).any()):
            raise GradientError(f"db_mtl trains on log(L + eps) and needs L > -eps={self.eps:g}"
                                f", got losses {L.tolist()}")
        if self._buffer is None or self._buffer.shape != J.shape:
            self._buffer = torch.zeros_like(J)
            self._t = 0
        self._t += 1
        beta_t = self.beta / self._t ** self.beta_sigma
        g = J.detach() / (L + self.eps).to(device=J.device, dtype=J.dtype)[:, None]
        buf = self._buffer.to(device=J.device, dtype=J.dtype)
        buf = g + beta_t * (buf - g)  # = β_t ĝ + (1 - β_t) g, LibMTL's form
        self._buffer = buf
        norms = torch.linalg.vector_norm(buf.double(), dim=1)
        if not bool(torch.isfinite(norms).all()):
            raise GradientError(f"db_mtl: the log-loss gradients overflowed (losses "
                                f"{L.tolist()} are too close to 0 for {J.dtype})")
        alpha = torch.where(norms > 0, norms.max() / torch.where(norms > 0, norms, 1.0), 0.0)
        return alpha.to(device=J.device, dtype=J.dtype) @ buf


@hookimpl
def register_aggregators(register):
    register("db_mtl", DBMTL)
