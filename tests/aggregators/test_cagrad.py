import math

import numpy as np
import pytest
import torch
from mtlkit_plugins.aggregators import _solvers
from mtlkit_plugins.aggregators.cagrad import cagrad_dual, cagrad_dual_2
from scipy.optimize import minimize

from mtlkit.errors import ConfigError
from tests.aggregators.helpers import agg, make_J


def cagrad_primal(J: torch.Tensor, c: float) -> np.ndarray:
    """Independent reference: the primal max_d min_k g_k·d s.t. ‖d - g0‖ <= c‖g0‖, solved
    directly in R^n with SLSQP on (d, t)."""
    A = J.double().numpy()
    n = A.shape[1]
    g0 = A.mean(0)
    r = c * np.linalg.norm(g0)
    x0 = np.concatenate([g0, [min(A @ g0)]])
    cons = [{"type": "ineq", "fun": lambda x: A @ x[:n] - x[n]},
            {"type": "ineq", "fun": lambda x: r * r - np.sum((x[:n] - g0) ** 2)}]
    res = minimize(lambda x: -x[n], x0, constraints=cons, method="SLSQP",
                   options={"ftol": 1e-14, "maxiter": 1000})
    assert res.success, res.message
    return res.x[:n]


@pytest.mark.parametrize(("K", "n", "c"), [(2, 4, 0.4), (3, 5, 0.4), (3, 6, 0.9),
                                           (5, 8, 0.5), (8, 12, 0.2)])
def test_cagrad_matches_primal_solve(K, n, c):
    J = make_J(K, n, seed=K + n)
    d = agg("cagrad", c=c, rescale=0)(J).numpy()
    ref = cagrad_primal(J, c)
    assert np.linalg.norm(d - ref) <= 1e-4 * np.linalg.norm(ref)


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
        assert np.allclose(w2, wk, atol=1e-5)


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
    # solved directly in R^n
    A, g0n = J.numpy(), g0.numpy()
    proj = minimize(lambda x: np.sum((x - g0n) ** 2), g0n, jac=lambda x: 2 * (x - g0n),
                    constraints=[{"type": "ineq", "fun": lambda x: A @ x, "jac": lambda x: A}],
                    method="SLSQP", options={"ftol": 1e-15, "maxiter": 1000})
    assert proj.success, proj.message
    assert np.allclose(d.numpy(), proj.x, atol=1e-8)
