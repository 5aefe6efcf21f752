"""Certified references and problem-derived tolerances for the aggregator tests.

A test reference must not depend on the machine it runs on. SciPy's SLSQP or a hand-rolled
iteration can stop anywhere ("Positive directional derivative for linesearch" on one CPU, a
converged answer on another), so every reference that is an optimisation problem is solved with
cvxpy + Clarabel, an interior-point method that reports ``optimal`` only when its primal and dual
residuals and its duality gap are below the tolerances set here (a certificate, not a guess), and
the test asserts that status.

Tolerances come from the problem, not from one machine's output:

* the reference's distance to the true argmin follows from Clarabel's gap tolerance and the
  problem's strong convexity ``μ`` (``f(x) - f* >= μ/2 ‖x - x*‖²`` gives
  ``‖x - x*‖ <= sqrt(2 gap / μ)``): :func:`argmin_radius`;
* the aggregator's own error follows from its documented solver contract (duality gap,
  residual, ridge), each test says which;
* float64 round-off of a computation on ``J`` is bounded by ``c·K·n·eps·M·κ`` with ``M`` the
  largest row norm and ``κ`` the condition number the computation divides by:
  :func:`roundoff`.
"""

from __future__ import annotations

import math

import cvxpy as cp
import numpy as np
import torch

#: Clarabel's gap and feasibility tolerances for the references (its defaults are 1e-8; a
#: tighter setting keeps sqrt(gap) bounds meaningful and small problems still reach it).
CLARABEL_TOL = 1e-10
EPS64 = float(np.finfo(np.float64).eps)


def solve_certified(problem: cp.Problem) -> float:
    """Solve with Clarabel at :data:`CLARABEL_TOL`; fail the test unless it certifies optimality.

    Returns the bound on the duality gap that the ``optimal`` status certifies
    (``tol_gap_abs + tol_gap_rel · |objective|``).
    """
    problem.solve(solver="CLARABEL", tol_gap_abs=CLARABEL_TOL, tol_gap_rel=CLARABEL_TOL,
                  tol_feas=CLARABEL_TOL, tol_ktratio=1e-8)
    assert problem.status == cp.OPTIMAL, f"reference solver: {problem.status}"
    return CLARABEL_TOL * (1.0 + abs(float(problem.value)))


def argmin_radius(gap: float, mu: float) -> float:
    """``sqrt(2 gap / μ)``: how far a point whose objective is within ``gap`` of the optimum can
    be from the argmin of a ``μ``-strongly convex problem."""
    return math.sqrt(2.0 * max(gap, 0.0) / mu)


def roundoff(J: torch.Tensor, cond: float = 1.0, factor: float = 16.0) -> float:
    """A bound on float64 round-off of a computation on ``J`` (``factor·K·n·eps·M·cond``)."""
    K, n = J.shape
    M = float(J.double().norm(dim=1).max())
    return factor * K * n * EPS64 * max(M, 1.0) * cond


def gramian_cond(J: torch.Tensor) -> float:
    """Condition number of ``J J^T`` on its range (what eigendecomposition-based weights divide
    by); relative cut-off at ``K·eps`` for rank-deficient ``J``."""
    S = torch.linalg.svdvals(J.double())
    keep = S[S.max() * J.shape[0] * EPS64 < S]
    return float((keep.max() / keep.min()) ** 2)


def min_norm_point(J: torch.Tensor) -> tuple[np.ndarray, float]:
    """MGDA reference: ``min ‖J^T w‖²`` over the simplex, on ``J`` itself (no Gramian).

    Returns ``(d, radius)``: ``d = J^T w`` and a bound on ``‖d - d*‖``. In ``d`` the problem is
    2-strongly convex, so ``radius = argmin_radius(gap, 2)``.
    """
    A = J.double().numpy()
    w = cp.Variable(A.shape[0], nonneg=True)
    gap = solve_certified(cp.Problem(cp.Minimize(cp.sum_squares(A.T @ w)), [cp.sum(w) == 1]))
    return A.T @ w.value, argmin_radius(gap, 2.0)


def dual_cone_projection(J: torch.Tensor, g: np.ndarray) -> tuple[np.ndarray, float]:
    """``argmin ‖x - g‖² s.t. J x >= 0`` in ``R^n`` and a bound on its distance to the exact
    projection (2-strongly convex)."""
    A = J.double().numpy()
    x = cp.Variable(A.shape[1])
    gap = solve_certified(cp.Problem(cp.Minimize(cp.sum_squares(x - g)), [A @ x >= 0]))
    return x.value, argmin_radius(gap, 2.0)
