"""MoCo: multi-objective gradient correction by tracking variables.

Fernando, Shen, Liu, Chaudhury, Murugesan & Chen, "Mitigating Gradient Bias in Multi-objective
Learning: A Provably Convergent Approach", ICLR 2023, https://arxiv.org/abs/2210.12624
(Alg. 1).

MGDA's weights computed from one mini-batch are a biased estimate of the weights of the true
gradients. MoCo removes the bias by tracking each task's gradient with a variable ``y_k`` and
running MGDA's weight problem on the tracked ``Y`` by one projected step per training step:

.. math:: Y_{t+1} = Y_t - \\beta_t (Y_t - J_t), \\qquad
          \\lambda_{t+1} = \\Pi_{\\Delta_K}\\big(\\lambda_t - \\gamma_t
          (Y_{t+1} Y_{t+1}^\\top + \\rho I) \\lambda_t\\big), \\qquad
          d_t = Y_{t+1}^\\top \\lambda_{t+1}

with ``β_t = β / t^{σ_β}``, ``γ_t = γ / t^{σ_γ}`` (``t = 1, 2, …`` counts the calls since
:meth:`reset`), ``Y_0 = 0``, ``λ_0 = 1/K``. The update is the tracked combination, not a
combination of the current ``J``: it carries the gradients of earlier steps. The paper's
optional projection of ``y_k`` onto a bounded set (a proof device) is not applied, as in every
published implementation.

``normalize=True`` tracks ``L_k g_k / ‖g_k‖`` instead of ``g_k`` (each gradient rescaled to its
loss), as in the authors' code shared with LibMTL; it reads ``context["losses"]``.

Defaults ``beta = 0.5``, ``beta_sigma = 0.5``, ``gamma = 0.1``, ``gamma_sigma = 0.5``,
``rho = 0``, ``normalize = False`` (the paper's algorithm; LibMTL and TorchJD 0.18 use the same
step sizes). Differences from the peers: both replace the simplex projection by
``softmax(λ - γ_t(Y Y^T + ρI)λ)``; LibMTL always normalises the gradients as above.

Interface: needs the full Jacobian (``Y`` is ``[K, n]``, kept in ``J``'s dtype and device: one
extra ``K x n`` buffer). When the number of tasks or of trainable coordinates changes (a new
mask), the tracking restarts from ``Y = 0``, ``λ = 1/K``, ``t = 0``.

Properties: permutation invariant (every step is permutation-equivariant). Not weighted
(``d`` is in the span of the tracked rows, not of ``J``), not linear under scaling (the
λ-step scales with ``a²``), not non-conflicting. Stateful: :meth:`reset`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import (
    check_range,
    losses_vector,
    project_simplex,
    to_weights,
)

from mtlkit import hookimpl
from mtlkit.aggregation import Aggregator, gramian_matrix
from mtlkit.errors import ConfigError, GradientError


@attrs.define(eq=False)
class MoCo(Aggregator):
    """MoCo: MGDA weights by a projected step on tracked (bias-corrected) task gradients."""

    beta: float = 0.5
    beta_sigma: float = 0.5
    gamma: float = 0.1
    gamma_sigma: float = 0.5
    rho: float = 0.0
    normalize: bool = False
    #: tracked gradients Y_t ([K, n], J's dtype and device); None before the first step
    _y: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)
    #: λ_t (float64, CPU)
    _lambda: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)
    #: t: calls since reset
    _t: int = attrs.field(init=False, default=0, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset({"permutation_invariant"})
    stateful: ClassVar[bool] = True
    #: context read besides J ("losses" only with normalize=True)
    context_keys: ClassVar[frozenset[str]] = frozenset({"losses"})

    def __attrs_post_init__(self) -> None:
        check_range("beta", self.beta, 0.0, 1.0, lo_open=True)
        check_range("gamma", self.gamma, 0.0, 1e12, lo_open=True)
        check_range("beta_sigma", self.beta_sigma, 0.0, 10.0)
        check_range("gamma_sigma", self.gamma_sigma, 0.0, 10.0)
        check_range("rho", self.rho, 0.0, 1e12)
        if not isinstance(self.normalize, bool):
            raise ConfigError(f"invalid normalize={self.normalize!r}: must be true or false")

    def reset(self) -> None:
        self._y = None
        self._lambda = None
        self._t = 0

    def _targets(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        if not self.normalize:
            return J
        losses = context.get("losses")
        if losses is None:
            raise ConfigError("moco with normalize=True needs the task losses in its context")
        L = losses_vector(losses, J.shape[0], "moco").to(device=J.device, dtype=J.dtype)
        norms = torch.linalg.vector_norm(J, dim=1)
        # a zero gradient stays zero (it has no direction to rescale)
        scale = torch.where(norms > 0, L / torch.where(norms > 0, norms, 1.0), 0.0)
        return J * scale[:, None]

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        K = J.shape[0]
        if self._y is None or self._y.shape != J.shape or self._lambda is None:
            self._y = torch.zeros_like(J)
            self._lambda = torch.full((K,), 1.0 / K, dtype=torch.float64)
            self._t = 0
        self._t += 1
        beta_t = self.beta / self._t ** self.beta_sigma
        gamma_t = self.gamma / self._t ** self.gamma_sigma
        y = self._y.to(device=J.device, dtype=J.dtype)
        y = y - beta_t * (y - self._targets(J.detach(), context))
        YY = gramian_matrix(y).to(device="cpu", dtype=torch.float64).numpy()
        lam = self._lambda.numpy()
        step = YY @ lam + self.rho * lam
        if not bool(np.isfinite(step).all()):
            raise GradientError(f"moco: the weight step overflowed (tracked Gramian diagonal "
                                f"{np.diag(YY).tolist()}); the gradients are too large")
        self._y = y
        self._lambda = to_weights(project_simplex(lam - gamma_t * step))
        return self._lambda.to(device=J.device, dtype=J.dtype) @ y


@hookimpl
def register_aggregators(register):
    register("moco", MoCo)
