import math

import cvxpy as cp
import numpy as np
import pytest
import torch
from mtlkit_plugins.aggregators import _solvers
from mtlkit_plugins.aggregators.cagrad import DUAL_GAP_TOL, cagrad_dual, cagrad_dual_2

from mtlkit.errors import ConfigError
from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import (
    EPS64,
    argmin_radius,
    dual_cone_projection,
    roundoff,
    solve_certified,
)


def cagrad_primal(J: torch.Tensor, c: float) -> tuple[np.ndarray, float, float]:
    """Independent reference: the primal ``max_d min_k g_k·d`` s.t. ``‖d - g0‖ <= c‖g0‖``,
    solved directly in R^n (cvxpy + Clarabel, a certified SOCP).

    Returns ``(d, radius, ‖h‖)``. With ``h = Σ_k λ_k g_k`` (``λ`` the normalised duals of the
    linear constraints) the objective drops at least ``‖h‖ ‖d - d*‖² / (2r)`` away from the
    optimum on the ball (``min_k g_k·d <= h·d`` and ``‖u - r h/‖h‖‖² <= 2r(r - u·h/‖h‖)`` for
    ``‖u‖ <= r``): strong concavity ``μ = ‖h‖ / r``, so ``radius = argmin_radius(gap, μ)``.
    """
    A = J.double().numpy()
    g0 = A.mean(0)
    r = c * np.linalg.norm(g0)
    x, t = cp.Variable(A.shape[1]), cp.Variable()
    linear = A @ x >= t
    gap = solve_certified(cp.Problem(cp.Maximize(t), [linear, cp.norm(x - g0) <= r]))
    lam = np.clip(np.asarray(linear.dual_value, dtype=float), 0.0, None)
    h_norm = float(np.linalg.norm(A.T @ (lam / lam.sum())))
    return x.value, argmin_radius(gap, h_norm / r), h_norm


@pytest.mark.parametrize(("K", "n", "c"), [(2, 4, 0.4), (3, 5, 0.4), (3, 6, 0.9),
                                           (5, 8, 0.5), (8, 12, 0.2)])
def test_cagrad_matches_primal_solve(K, n, c):
    J = make_J(K, n, seed=K + n)
    d = agg("cagrad", c=c, rescale=0)(J).numpy()
    ref, radius, h_norm = cagrad_primal(J, c)
    # Ours: for K > 2 the solver certifies a duality gap below cagrad.gap_tolerance on the
    # Gramian normalised by s = mean ‖g_k‖² (DUAL_GAP_TOL·max(1, |F|) + r·RIDGE/‖g_w‖ in those
    # units), and that gap bounds the primal suboptimality of d itself (cagrad.dual_gap);
    # K = 2 is closed form.
    s = float((J * J).sum(1).mean())
    r = c * float(J.mean(0).norm())
    F = float(J.mean(0) @ torch.as_tensor(d)) / s  # |F| = min_k g_k·d* / s at the optimum
    gap = DUAL_GAP_TOL * max(1.0, abs(F)) + r * _solvers.RIDGE / h_norm
    ours = 0.0 if K == 2 else argmin_radius(s * gap, h_norm / r)
    assert np.linalg.norm(d - ref) <= radius + ours + roundoff(J, cond=1 + r / h_norm)


def test_c_zero_is_exactly_the_mean():
    J = make_J(5, 33, seed=3, dtype=torch.float32)
    for rescale in (0, 1, 2):
        assert torch.equal(agg("cagrad", c=0.0, rescale=rescale)(J), J.mean(0))


def test_two_task_closed_form_equals_general_solver():
    for seed in range(8):
        J = make_J(2, 7, seed)
        A, _ = _solvers.as_normalized_numpy(J @ J.T)
        r = 0.4 * math.sqrt(float(np.full(2, 0.5) @ A @ np.full(2, 0.5)))
        w2, wk = cagrad_dual_2(A, r), cagrad_dual(A, r)
        # The general solver certifies F(w) - F* <= DUAL_GAP_TOL·max(1, |F|) for the 1-D convex
        # F(x) = p x + q + r sqrt(Q(x)), Q(x) = a x² + b x + e (w = (x, 1 - x)), so its x is
        # within argmin_radius(that gap, F''(x*)) of the closed form's (both entries move).
        x = w2[0]
        a, b, e = A[0, 0] + A[1, 1] - 2 * A[0, 1], 2 * (A[0, 1] - A[1, 1]), A[1, 1]
        Q = a * x * x + b * x + e
        curvature = r * (4 * a * Q - (2 * a * x + b) ** 2) / (4 * Q**1.5)
        F = float(w2 @ A @ np.full(2, 0.5) + r * math.sqrt(Q))
        tol = argmin_radius(DUAL_GAP_TOL * max(1.0, abs(F)), curvature) + 1e3 * EPS64
        assert np.abs(w2 - wk).max() <= tol


def test_rescale_and_reduction_conventions():
    J = make_J(3, 9, seed=1)
    c = 0.4
    d0 = agg("cagrad", c=c, rescale=0)(J)
    assert torch.allclose(agg("cagrad", c=c, rescale=1)(J), d0 / (1 + c**2))
    assert torch.allclose(agg("cagrad", c=c, rescale=2)(J), d0 / (1 + c))
    assert torch.allclose(agg("cagrad", c=c, rescale=1, reduction="sum")(J),
                          3 * d0 / (1 + c**2))


def test_constraint_ball_is_respected():
    J = make_J(4, 10, seed=2)
    d = agg("cagrad", c=0.6, rescale=0)(J)
    g0 = J.mean(0)
    assert float((d - g0).norm()) <= 0.6 * float(g0.norm()) * (1 + 1e-8)


@pytest.mark.parametrize(("field", "value"), [("c", 1.0), ("c", -0.1), ("rescale", 3),
                                              ("reduction", "avg")])
def test_invalid_hyper_parameters(field, value):
    with pytest.raises(ConfigError, match=field):
        agg("cagrad", **{field: value})


def test_stationary_case_returns_the_optimal_point_nearest_the_mean():
    # zero rows put 0 in the convex hull: the primal optimum is 0, attained on a set
    J = torch.tensor([[0.0, 0.0], [-2.18, 0.57], [0.0, 0.0], [0.40, 0.84], [-0.72, -0.40],
                      [-0.60, 0.18]], dtype=torch.float64)
    a = agg("cagrad", c=0.4, rescale=0)
    d = a(J)
    g0 = J.mean(0)
    assert bool((J @ d >= -1e-9).all())  # optimal: primal value 0
    assert float((d - g0).norm()) <= 0.4 * float(g0.norm()) + 1e-9  # inside the ball
    perm = torch.tensor([2, 5, 3, 0, 1, 4])
    assert torch.allclose(a(J[perm]), d, atol=1e-8)
    # the canonical optimal point: the projection of g0 onto the dual cone {x : J x >= 0},
    # solved directly in R^n (certified); ours is quadprog's exact active-set answer on the
    # ridged (RIDGE) normalised Gramian: its error is O(RIDGE) relative plus round-off.
    proj, radius = dual_cone_projection(J, g0.numpy())
    tol = radius + float(g0.norm()) * (_solvers.RIDGE + 1e3 * EPS64) + roundoff(J)
    assert np.linalg.norm(d.numpy() - proj) <= tol
