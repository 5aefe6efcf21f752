"""FairGrad: fair resource allocation in multi-task learning.

Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024,
https://arxiv.org/abs/2402.15638.

The update ``d = Σ_k w_k g_k`` maximises the α-fair utility of the tasks' improvement rates;
its optimality condition is

.. math:: G w = w^{-1/\\alpha} \\quad (\\text{element-wise}),

so ``g_k · d = w_k^{-1/α} > 0`` for every task. α = 1 is proportional fairness (Nash-MTL's
condition); α → ∞ tends to max-min fairness (MGDA-like). Solved with scipy ``least_squares``
(as the reference implementation) on the normalised Gramian ``G/s``; the weights are mapped back
with ``w = w_n · s^{-α/(α+1)}`` so that they solve the equation for ``G`` itself. A solve whose
residual is not small raises :class:`~mtlkit.errors.GradientError` (``on_failure="warn"``: a
loud warning and the mean weights).

Special cases as Nash-MTL: zero-gradient tasks get weight 0; Pareto-stationary gradients (no
solution exists) give a zero update.

Hyper-parameters: ``alpha = 1.0`` (LibMTL's default; the paper tunes α per benchmark).

Properties: non-conflicting, permutation invariant, weighted. Not linear under scaling, by
design: ``agg(a J) = a^{(1-α)/(1+α)} agg(J)`` (scale-invariant for α = 1).
"""

from __future__ import annotations

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
from scipy.optimize import least_squares

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting
from mtlkit.errors import GradientError

#: Largest accepted residual ``‖A w - w^{-1/α}‖ / max(1, ‖w^{-1/α}‖)`` (normalised units): the
#: certificate every answer carries (a solve that misses it raises).
RESIDUAL_TOL = 1e-6


def fairgrad_weights(A: np.ndarray, alpha: float) -> np.ndarray:
    """Solve ``A w = w^{-1/α}`` for ``w > 0`` (normalised units)."""
    K = A.shape[0]
    p = 1.0 / alpha

    def fun(w: np.ndarray) -> np.ndarray:
        return A @ w - np.power(w, -p)

    def jac(w: np.ndarray) -> np.ndarray:
        return A + np.diag(p * np.power(w, -p - 1.0))

    res = least_squares(fun, np.ones(K), jac=jac, bounds=(1e-12, np.inf), xtol=1e-15,
                        ftol=1e-15, gtol=1e-15, max_nfev=1000)
    w = res.x
    resid = float(np.linalg.norm(fun(w)) / max(1.0, float(np.linalg.norm(np.power(w, -p)))))
    if not np.isfinite(resid) or resid > RESIDUAL_TOL:
        raise GradientError(f"FairGrad solve did not converge (relative residual {resid:.3g}, "
                            f"K={K}, alpha={alpha})")
    return w


@attrs.define(eq=False)
class FairGrad(GramianWeighting):
    """α-fair allocation of the update's improvement among tasks."""

    alpha: float = 1.0
    on_failure: str = "raise"

    properties: ClassVar[frozenset[str]] = frozenset(
        {"non_conflicting", "permutation_invariant", "weighted"})

    def __attrs_post_init__(self) -> None:
        check_range("alpha", self.alpha, 0.0, 1e6, lo_open=True)
        check_choice("on_failure", self.on_failure, ("raise", "warn"))

    @bounded_threads
    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        A, scale = as_normalized_numpy(G)
        K = A.shape[0]
        screened = stationarity_screen(A, G.dtype)
        if screened is None:  # no active task, or Pareto-stationary: no update
            return torch.zeros(K, dtype=torch.float64)
        active, B, _ = screened
        try:
            wa = fairgrad_weights(B, self.alpha)
        except GradientError as exc:
            if self.on_failure == "raise":
                raise
            warnings.warn(f"fairgrad: {exc}; using the mean weights", RuntimeWarning,
                          stacklevel=3)
            return torch.full((K,), 1.0 / K, dtype=torch.float64)
        w = np.zeros(K)
        w[active] = wa * scale ** (-self.alpha / (self.alpha + 1.0))
        return to_weights(w)


@hookimpl
def register_aggregators(register):
    register("fairgrad", FairGrad)
