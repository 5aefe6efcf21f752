"""CAGrad: conflict-averse gradient descent.

Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021,
https://arxiv.org/abs/2110.14048 (Eq. 3, Lemma A.2).

Primal: ``max_d min_k g_k·d`` s.t. ``‖d - g_0‖ <= c ‖g_0‖`` with ``g_0`` the mean gradient.
Dual over the simplex, with ``g_w = Σ_k w_k g_k``:

.. math:: w^* = \\arg\\min_{w \\in \\Delta_K} g_w^\\top g_0 + c\\lVert g_0\\rVert\\lVert g_w\\rVert,
          \\qquad d = g_0 + \\frac{c \\lVert g_0 \\rVert}{\\lVert g_{w^*} \\rVert} g_{w^*}

Solved on the normalised Gramian: ``K = 2`` exactly (the 1-D convex problem's stationary points
are the roots of a quadratic; the minimum over them and the end points is taken), ``K > 2`` with
scipy SLSQP (analytic gradient, tight tolerance; a failed solve raises). ``c = 0`` returns the
mean exactly. When ``g_{w^*} = 0`` (Pareto-stationary: the primal optimum is 0 and attained
on a set) the dual formula's direction is undefined (solver noise; TorchJD returns 0 there, the
reference code's ``+1e-8`` gives an arbitrary direction); this library returns the optimal
point nearest ``g_0``: the projection of ``g_0`` onto the dual cone ``{d : J d >= 0}``
(quadprog), which is unique and permutation invariant.

Hyper-parameters (paper / reference-code defaults):

``c = 0.4``       in [0, 1) (convergence of Thm 3.2 needs ``c < 1``);
``rescale = 1``   0: ``d``; 1: ``d / (1 + c²)`` (reference code, used in all its runs);
                  2: ``d / (1 + c)``;
``reduction``     ``"mean"`` (default, the paper's ``g_0`` scale and mtlkit's mean convention)
                  or ``"sum"``: multiply by K as the reference code does "to match the sum
                  loss" (papers.md §4.2; reproduce this to match published numbers with SGD).

Properties: permutation invariant, linear under scaling, weighted.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import (
    as_normalized_numpy,
    check_choice,
    check_range,
    project_dual_cone,
    to_weights,
)
from scipy.optimize import minimize

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting
from mtlkit.errors import GradientError

#: ``‖g_w*‖²`` (normalised units) below which the dual optimum is taken as exactly 0; SLSQP's
#: ~1e-12 accuracy in the objective leaves ~1e-6 relative error in ``‖g_w‖``.
STATIONARY_TOL = 1e-10


def _objective(A: np.ndarray, w: np.ndarray, r: float) -> float:
    K = A.shape[0]
    return float(w @ A @ np.full(K, 1.0 / K) + r * math.sqrt(max(float(w @ A @ w), 0.0)))


def cagrad_dual_2(A: np.ndarray, r: float) -> np.ndarray:
    """Exact minimiser of the 2-task dual on ``w = (x, 1 - x)``, ``x in [0, 1]``.

    ``F(x) = p x + q + r sqrt(a x² + b x + e)`` is convex; ``F'(x) = 0`` implies
    ``r² (2 a x + b)² = 4 p² (a x² + b x + e)``, a quadratic in ``x``.
    """
    a = A[0, 0] + A[1, 1] - 2 * A[0, 1]
    b = 2 * (A[0, 1] - A[1, 1])
    e = A[1, 1]
    p = 0.5 * (A[0, 0] - A[1, 1])
    coeffs = [4 * a * (r * r * a - p * p), 4 * b * (r * r * a - p * p),
              r * r * b * b - 4 * p * p * e]
    candidates = [0.0, 1.0]
    c2, c1, c0 = coeffs
    if abs(c2) > 1e-300:
        roots = [complex(z) for z in np.roots(coeffs)]
    elif abs(c1) > 1e-300:
        roots = [complex(-c0 / c1)]
    else:
        roots = []
    candidates += [z.real for z in roots if abs(z.imag) < 1e-12 and 0.0 <= z.real <= 1.0]
    best = min(candidates, key=lambda x: _objective(A, np.array([x, 1 - x]), r))
    return np.array([best, 1.0 - best])


def cagrad_dual(A: np.ndarray, r: float) -> np.ndarray:
    """Minimiser of ``w^T A 1/K + r sqrt(w^T A w)`` over the simplex (SLSQP, K > 2)."""
    K = A.shape[0]
    b = A @ np.full(K, 1.0 / K)

    def fun(w: np.ndarray) -> tuple[float, np.ndarray]:
        Aw = A @ w
        norm = math.sqrt(max(float(w @ Aw), 1e-30))
        return float(w @ b) + r * norm, b + r * Aw / norm

    res = minimize(fun, np.full(K, 1.0 / K), jac=True, method="SLSQP",
                   bounds=[(0.0, 1.0)] * K,
                   constraints=({"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                 "jac": lambda w: np.ones_like(w)},),
                   options={"ftol": 1e-12, "maxiter": 500})
    if not res.success:
        raise GradientError(f"CAGrad dual solve failed (SLSQP: {res.message}); K={K}")
    w = np.clip(res.x, 0.0, None)
    return w / w.sum()


@attrs.define(eq=False)
class CAGrad(GramianWeighting):
    """Conflict-averse gradient: best worst-case improvement near the mean gradient."""

    c: float = 0.4
    rescale: int = 1
    reduction: str = "mean"

    properties: ClassVar[frozenset[str]] = frozenset(
        {"permutation_invariant", "linear_under_scaling", "weighted"})

    def __attrs_post_init__(self) -> None:
        check_range("c", self.c, 0.0, 1.0, hi_open=True)
        check_choice("rescale", self.rescale, (0, 1, 2))
        check_choice("reduction", self.reduction, ("mean", "sum"))

    def aggregate(self, J: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        if self.c == 0:
            # Exactly the mean (no solver round-off): the constraint ball is the point g_0.
            d = J.mean(dim=0)
            return d * J.shape[0] if self.reduction == "sum" else d
        return super().aggregate(J, context)

    def weights(self, G: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        A, _ = as_normalized_numpy(G)
        K = A.shape[0]
        mean_w = np.full(K, 1.0 / K)
        g0_norm = math.sqrt(max(float(mean_w @ A @ mean_w), 0.0))
        r = self.c * g0_norm
        u = mean_w.copy()
        if r > 0.0:
            w = cagrad_dual_2(A, r) if K == 2 else cagrad_dual(A, r)
            gw_sq = max(float(w @ A @ w), 0.0)
            if gw_sq > STATIONARY_TOL:
                u = u + (r / math.sqrt(gw_sq)) * w
            else:
                # g_w* = 0: 0 is in the convex hull, the primal optimum is 0 and its solutions
                # form a set; the dual's direction g_w*/‖g_w*‖ is then solver noise. Take the
                # canonical optimal point instead: the one nearest g_0, i.e. the projection of
                # g_0 onto the dual cone {d : J d >= 0} (inside the ball since some optimal d
                # is), whose weights solve min_{v >= 1/K} v^T G v.
                u = project_dual_cone(A, mean_w)
        if self.rescale == 1:
            u = u / (1 + self.c**2)
        elif self.rescale == 2:
            u = u / (1 + self.c)
        if self.reduction == "sum":
            u = u * K
        return to_weights(u)


@hookimpl
def register_aggregators(register):
    register("cagrad", CAGrad)
