"""CAGrad: conflict-averse gradient descent.

Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021,
https://arxiv.org/abs/2110.14048 (Eq. 3, Lemma A.2).

Primal: ``max_d min_k g_k·d`` s.t. ``‖d - g_0‖ <= c ‖g_0‖`` with ``g_0`` the mean gradient.
Dual over the simplex, with ``g_w = Σ_k w_k g_k``:

.. math:: w^* = \\arg\\min_{w \\in \\Delta_K} g_w^\\top g_0 + c\\lVert g_0\\rVert\\lVert g_w\\rVert,
          \\qquad d = g_0 + \\frac{c \\lVert g_0 \\rVert}{\\lVert g_{w^*} \\rVert} g_{w^*}

Solved on the normalised Gramian: ``K = 2`` exactly (the 1-D convex problem's stationary points
are the roots of a quadratic; the minimum over them and the end points is taken), ``K > 2`` by
exact QPs inside a 1-D convex search (:func:`cagrad_dual`), accepted only with a certified
duality gap (an unconverged solve raises). ``c = 0`` returns the
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

Properties: permutation invariant, positively homogeneous, weighted.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from mtlkit_plugins.aggregators._solvers import (
    RIDGE,
    as_normalized_numpy,
    bounded_threads,
    check_choice,
    check_range,
    project_dual_cone,
    require_quadprog,
    to_weights,
)
from scipy.optimize import minimize_scalar

from mtlkit import hookimpl
from mtlkit.aggregation import GramianWeighting
from mtlkit.errors import GradientError

#: Largest accepted duality gap of the K > 2 dual (normalised units, relative to ``|F|`` when
#: that exceeds 1): the direction is then within that gap of the primal optimum.
DUAL_GAP_TOL = 1e-9
#: ``‖g_w*‖²`` (normalised units) below which the dual optimum is taken as exactly 0 (the
#: direction ``g_w/‖g_w‖`` is then dominated by solver round-off).
STATIONARY_TOL = 1e-10
#: fixed-point steps after the 1-D search (each one QP)
POLISH_STEPS = 20


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


def dual_gap(A: np.ndarray, w: np.ndarray, r: float) -> float:
    """Frank-Wolfe gap ``∇F(w)·w - min_k ∇F(w)_k`` of the dual ``F`` at ``w`` (normalised units).

    It bounds ``F(w) - F*`` and is exactly ``F(w) - min_k g_k·d(w)`` with
    ``d(w) = g_0 + r g_w/‖g_w‖``: the duality gap between ``w`` and the primal point it gives,
    so ``d(w)`` is within ``dual_gap`` of the primal optimum (a certificate, not an estimate).
    """
    K = A.shape[0]
    Aw = A @ w
    norm = math.sqrt(max(float(w @ Aw), 0.0))
    if norm == 0.0:
        return math.inf
    grad = A @ np.full(K, 1.0 / K) + r * Aw / norm
    return float(grad @ w - grad.min())


def gap_tolerance(A: np.ndarray, w: np.ndarray, r: float) -> float:
    """The duality gap :func:`cagrad_dual` accepts at ``w``: ``DUAL_GAP_TOL·max(1, |F(w)|)``
    plus what the QPs' ridge can cost. They solve the dual of ``A + RIDGE·I``, whose objective
    differs from ``F`` by at most ``r·RIDGE/(2‖g_w‖)`` (``‖w‖ <= 1``), so the ridged optimum
    may sit up to twice that above ``F*``: negligible unless ``g_w*`` is nearly 0."""
    q = max(float(w @ A @ w), 1e-300)
    return DUAL_GAP_TOL * max(1.0, abs(_objective(A, w, r))) + r * RIDGE / math.sqrt(q)


def cagrad_dual(A: np.ndarray, r: float) -> np.ndarray:
    """Minimiser of ``F(w) = w^T A 1/K + r sqrt(w^T A w)`` over the simplex (K > 2), certified.

    ``sqrt(q) = min_{s > 0} q/(2s) + s/2`` turns ``F`` into ``min_s φ(s)`` with
    ``φ(s) = min_{w ∈ Δ} b·w + (r/2s) w^T A w + r s/2``: an exact QP (quadprog) for each ``s``
    and a convex 1-D function of ``s`` (the perspective of a quadratic is jointly convex),
    minimised by bounded Brent on ``[0, max_k ‖g_k‖]`` (``s* = ‖g_w*‖``). No line search that
    can stop early on one CPU and not another (SLSQP's "Positive directional derivative"): the
    answer is accepted only if its duality gap (:func:`dual_gap`) is below
    :func:`gap_tolerance`, otherwise :class:`~mtlkit.errors.GradientError`. Near a
    Pareto-stationary point (``g_w* ≈ 0``) the gap is not checked: the caller replaces that
    answer by the dual-cone projection.
    """
    quadprog = require_quadprog("CAGrad")
    K = A.shape[0]
    b = A @ np.full(K, 1.0 / K)
    C = np.concatenate([np.ones((K, 1)), np.eye(K)], axis=1)  # sum w = 1, w >= 0
    lower = np.concatenate([[1.0], np.zeros(K)])
    P = A + RIDGE * np.eye(K)

    def inner(s: float) -> np.ndarray:
        # the QP scaled by s/r: its matrix stays the well-scaled A even as s -> 0
        w = quadprog.solve_qp(P, -(s / r) * b, C, lower, meq=1)[0]
        w = np.clip(w, 0.0, None)
        return w / w.sum()

    def phi(s: float) -> float:
        w = inner(s)
        return float(w @ b + (r / (2.0 * s)) * (w @ A @ w) + 0.5 * r * s)

    top = math.sqrt(max(float(np.max(np.diag(A))), 1e-300))
    res = minimize_scalar(phi, bounds=(1e-12 * top, top), method="bounded",
                          options={"xatol": 1e-12 * top, "maxiter": 500})
    s = float(res.x)
    w = inner(s)
    # φ'(s) = r/2 (1 - q(w_s)/s²): the optimum is the fixed point s = ‖g_{w_s}‖. Brent stops at
    # xatol; a few fixed-point steps take the last digits where φ is flat.
    for _ in range(POLISH_STEPS):
        if dual_gap(A, w, r) <= gap_tolerance(A, w, r):
            break
        s = math.sqrt(max(float(w @ A @ w), 1e-24 * top * top))
        w = inner(s)
    if float(w @ A @ w) > STATIONARY_TOL:
        gap = dual_gap(A, w, r)
        if not gap <= gap_tolerance(A, w, r):
            raise GradientError(f"CAGrad dual solve did not converge (duality gap {gap:.3g} on "
                                f"the normalised Gramian, K={K}); refusing an inexact direction")
    return w


@attrs.define(eq=False)
class CAGrad(GramianWeighting):
    """Conflict-averse gradient: best worst-case improvement near the mean gradient."""

    c: float = 0.4
    rescale: int = 1
    reduction: str = "mean"

    properties: ClassVar[frozenset[str]] = frozenset(
        {"permutation_invariant", "positively_homogeneous", "weighted"})

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

    @bounded_threads
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
