"""Nash-MTL: multi-task learning as a bargaining game.

Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022,
https://arxiv.org/abs/2202.01017 (§3, Alg. 1; reference code AvivNavon/nash-mtl).

The Nash bargaining solution ``d = Σ_k α_k g_k`` solves ``G α = 1 / α`` (element-wise, paper
§3.1), i.e. ``α_k (G α)_k = 1``, so every task improves: ``g_k · d = 1 / α_k > 0``. That
equation is exactly the stationarity condition of the strictly convex potential

.. math:: f(\\alpha) = \\tfrac12 \\alpha^\\top G \\alpha - \\textstyle\\sum_k \\log \\alpha_k,
          \\qquad \\nabla f = G\\alpha - 1/\\alpha,

(a quadratic plus a log barrier: self-concordant), so it is solved by damped Newton steps
``Δ = -(G + diag(1/α²))^{-1} ∇f`` with step ``1/(1 + λ)`` while the Newton decrement ``λ`` is
large (globally convergent for self-concordant functions, and the step never leaves ``α > 0``),
then full steps (quadratic convergence). This is the fixed point the paper's sequential convex
procedure (reference code AvivNavon/nash-mtl, 20 cvxpy solves per step) approximates; solving it
directly needs no convex-optimisation package, takes a few K x K solves, and stops on a
scale-free certificate, ``max_k |α_k (G α)_k - 1| <= tol`` (every task's improvement
``g_k·d = 1/α_k`` is right to ``tol`` relative). No convergence within ``max_iter`` steps
raises :class:`~mtlkit.errors.GradientError` (``on_failure="warn"``: a loud ``RuntimeWarning``
and the previous weights). The start is the previous ``α`` (warm start) or the min-norm weights
plus a uniform part, rescaled to the best multiple ``t`` (``t² = K / αᵀGα``). Solved on the
normalised Gramian ``G/s``; the weights are rescaled by ``1/sqrt(s)`` so the answer is the
solution for ``G`` itself.

Special cases: tasks with a zero gradient are indifferent and get weight 0; when the remaining
gradients are Pareto-stationary (0 in their convex hull) no bargaining solution exists and the
update is zero (as MGDA's).

Hyper-parameters: ``update_weights_every = 1`` (reference default; reuse the weights in
between), ``tol = 1e-8`` (the reference stops its convex sequence at ``‖Gα - 1/α‖ < 1e-3``;
Newton reaches the tighter certificate in a few more steps), ``max_iter = 200`` Newton steps.
The reference also clips the shared gradient norm at 1.0; that is an optimiser setting, not part
of the aggregator.

Properties: non-conflicting, permutation invariant, weighted. *Not* linear under scaling: the
bargaining solution is scale-invariant (``‖d‖² = Σ_k α_k (Gα)_k = K``). Stateful (warm start,
step counter): :meth:`reset` between runs.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import (
    as_normalized_numpy,
    bounded_threads,
    check_choice,
    check_range,
    stationarity_screen,
    to_weights,
)

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting
from mtlkit.errors import GradientError, invalid_value


def _start(B: np.ndarray, mgda: np.ndarray) -> np.ndarray:
    """A positive start whose ``B α`` is positive: the min-norm weights ``w*`` give
    ``B w* >= ‖g_w*‖² > 0`` (not Pareto-stationary); a small uniform part makes every
    ``α_k > 0`` while ``B α`` stays positive. (The reference starts from ones, infeasible for
    its log constraint when some task conflicts with the sum.)"""
    m = B.shape[0]
    floor = float(mgda @ B @ mgda)
    spread = float(np.abs(B).sum(axis=1).max()) / m
    delta = 0.5 * floor / max(spread, 1e-300)
    return mgda + min(delta, 1.0) / m


def bargaining_weights(B: np.ndarray, start: np.ndarray, tol: float,
                       max_iter: int) -> np.ndarray:
    """Solve ``B α = 1/α``, ``α > 0`` by damped Newton on ``½ αᵀBα - Σ log α`` (see module).

    Raises :class:`GradientError` if the certificate ``max_k |α_k (Bα)_k - 1| <= tol`` is not
    reached in ``max_iter`` steps or the iterates stop being finite.
    """
    m = B.shape[0]
    alpha = np.asarray(start, dtype=float)
    quad = float(alpha @ B @ alpha)
    if quad > 0:  # the best multiple of the start: f(tα) is minimal at t² = m / αᵀBα
        alpha = alpha * math.sqrt(m / quad)
    residual = math.inf
    for _ in range(max_iter):
        Ba = B @ alpha
        residual = float(np.max(np.abs(alpha * Ba - 1.0)))
        if residual <= tol:
            return alpha
        grad = Ba - 1.0 / alpha
        H = B + np.diag(1.0 / alpha**2)
        step = -np.linalg.solve(H, grad)
        decrement = math.sqrt(max(float(-grad @ step), 0.0))
        # damped phase: t = 1/(1+λ) keeps α + tΔ inside α > 0 (‖tΔ/α‖_∞ <= λ/(1+λ) < 1)
        t = 1.0 if decrement < 0.25 else 1.0 / (1.0 + decrement)
        alpha = alpha + t * step
        if not np.all(np.isfinite(alpha)) or np.any(alpha <= 0):
            break
    raise GradientError(f"Nash-MTL did not converge: max_k |α_k (Gα)_k - 1| = {residual:.3g} "
                        f"> tol {tol:g} after {max_iter} Newton steps (K={m})")


@attrs.define(eq=False)
class NashMTL(GramianWeighting):
    """Nash bargaining solution over the task gradients (damped Newton, certified)."""

    update_weights_every: int = 1
    tol: float = 1e-8
    max_iter: int = 200
    on_failure: str = "raise"
    _alpha: np.ndarray | None = attrs.field(init=False, default=None, repr=False)
    _weights: torch.Tensor | None = attrs.field(init=False, default=None, repr=False)
    _step: int = attrs.field(init=False, default=0, repr=False)

    iterative_solver: ClassVar[bool] = True
    properties: ClassVar[frozenset[str]] = frozenset(
        {"non_conflicting", "permutation_invariant", "weighted"})
    stateful: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise invalid_value("max_iter", self.max_iter, "must be an integer >= 1")
        if not isinstance(self.update_weights_every, int) or self.update_weights_every < 1:
            raise invalid_value("update_weights_every", self.update_weights_every,
                                "must be an integer >= 1")
        check_range("tol", self.tol, 0.0, 1.0, lo_open=True)
        check_choice("on_failure", self.on_failure, ("raise", "warn"))

    def reset(self) -> None:
        self._alpha = None
        self._weights = None
        self._step = 0

    @bounded_threads
    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        K = G.shape[0]
        reuse = (self._weights is not None and self._weights.numel() == K
                 and self._step % self.update_weights_every != 0)
        self._step += 1
        if reuse:
            assert self._weights is not None
            return self._weights
        self._weights = self._solve(G)
        return self._weights

    def _solve(self, G: torch.Tensor) -> torch.Tensor:
        A, scale = as_normalized_numpy(G)
        K = A.shape[0]
        w = np.zeros(K)
        screened = stationarity_screen(A, G.dtype)
        if screened is None:  # no active task, or Pareto-stationary: no update
            return torch.zeros(K, dtype=torch.float64)
        active, B, mgda = screened
        prev = self._alpha
        warm = prev is not None and prev.shape == (K,) and bool((prev[active] > 0).all())
        start = prev[active] if warm and prev is not None else _start(B, mgda)
        if (B @ start <= 0).any():
            start = _start(B, mgda)
        try:
            alpha = bargaining_weights(B, start, self.tol, self.max_iter)
        except GradientError as exc:
            if self.on_failure == "raise":
                raise
            warnings.warn(f"nash_mtl: {exc}; reusing the previous weights", RuntimeWarning,
                          stacklevel=3)
            if self._weights is not None and self._weights.numel() == K:
                return self._weights
            return torch.full((K,), 1.0 / K, dtype=torch.float64)
        w[active] = alpha
        self._alpha = w.copy()
        return to_weights(w / math.sqrt(scale))


@hookimpl
def register_aggregators(register):
    register("nash_mtl", NashMTL)
