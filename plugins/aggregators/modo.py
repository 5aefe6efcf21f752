"""MoDo: multi-objective gradient with double sampling.

Chen, Fernando, Ying & Chen, "Three-Way Trade-Off in Multi-Objective Learning: Optimization,
Generalization and Conflict-Avoidance", NeurIPS 2023 / JMLR 2024,
https://arxiv.org/abs/2305.20057 (Alg. 1; reference code heshandevaka/Trade-Off-MOL).

MoDo runs MGDA's min-norm problem ``min_{λ∈Δ_K} ½‖J^T λ‖²`` by *one* projected stochastic
gradient step per training step instead of solving it, and keeps ``λ`` across steps:

.. math:: \\lambda_{t+1} = \\Pi_{\\Delta_K}\\big(\\lambda_t - \\gamma\\,
          (J_{t,1} J_{t,2}^\\top \\lambda_t + \\rho\\, \\lambda_t)\\big), \\qquad
          d_t = J_{t,3}^\\top \\lambda_{t+1}

with ``λ_0 = 1/K``, ``Π_Δ`` the Euclidean projection onto the simplex, ``γ`` the weight step and
``ρ`` an ℓ2 regulariser. The paper draws three independent mini-batches per step: ``J_1 J_2^T``
is then an unbiased estimate of ``∇F ∇F^T``, which its convergence and conflict-avoidance
guarantees need.

**Single-batch form (the difference from the paper).** mtlkit gives an aggregator the Jacobian
of one mini-batch, so here ``J_1 = J_2 = J_3 = J`` and the step uses ``G = J J^T``
(as TorchJD's ``MoDoWeighting`` does when it is fed one Gramian). ``E[J J^T]`` adds the
gradient covariance to ``∇F ∇F^T``, so the λ-step is biased towards tasks with noisy gradients;
the update direction is otherwise the paper's.

Defaults ``gamma = 1e-3``, ``rho = 0.1`` are LibMTL's (taken from the authors' code).
TorchJD 0.18 defaults to ``gamma = 0.1, rho = 0`` and replaces the projection by
``softmax(λ - γ(Gλ + ρλ))``; LibMTL uses the projection, as here. ``G`` is used unnormalised,
as in the paper and both peers, so ``γ`` is in units of squared gradient norm.

Interface: a Gramian method (``requires = "gramian"``); the λ update is K x K work.
Properties: permutation invariant (the projection is permutation-equivariant, ``λ_0``
uniform) and weighted. Not linear under scaling: ``a J`` scales the λ-step by ``a²``.
Stateful (``λ``): :meth:`reset`; a change of K restarts from ``1/K``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import check_range, project_simplex, to_weights

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting
from mtlkit.errors import GradientError


@attrs.define(eq=False)
class MoDo(GramianWeighting):
    """MoDo: one projected stochastic step on MGDA's simplex weights per training step."""

    gamma: float = 1e-3
    rho: float = 0.1
    #: λ_t (float64, on the CPU); None before the first step
    _lambda: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)

    properties: ClassVar[frozenset[str]] = frozenset({"permutation_invariant", "weighted"})
    stateful: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        check_range("gamma", self.gamma, 0.0, 1e12, lo_open=True)
        check_range("rho", self.rho, 0.0, 1e12)

    def reset(self) -> None:
        self._lambda = None

    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        A = G.detach().to(device="cpu", dtype=torch.float64).numpy()
        K = A.shape[0]
        if self._lambda is None or self._lambda.numel() != K:
            lam = np.full(K, 1.0 / K)
        else:
            lam = self._lambda.numpy()
        step = A @ lam + self.rho * lam
        if not bool(np.isfinite(step).all()):  # a float32 Gramian of huge gradients overflowed
            raise GradientError(f"modo: the weight step overflowed (Gramian diagonal "
                                f"{np.diag(A).tolist()}); the gradients are too large")
        lam = project_simplex(lam - self.gamma * step)
        self._lambda = to_weights(lam)
        return self._lambda.clone()


@hookimpl
def register_aggregators(register):
    register("modo", MoDo)
