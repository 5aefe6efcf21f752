"""MoDo against the paper's update computed step by step, with an independent simplex
projection (cvxpy + Clarabel)."""

import cvxpy as cp
import numpy as np
import pytest
import torch
from mtlkit_plugins.aggregators._solvers import project_simplex

from mtlkit.errors import ConfigError
from mtlkit.testing import checks_for, run_check
from tests.aggregators.helpers import agg, make_J

#: Clarabel stops at ~1e-8 relative gaps; the projection's weights are O(1) numbers
QP_TOL = 1e-6


def simplex_projection_qp(v: np.ndarray) -> np.ndarray:
    x = cp.Variable(v.size)
    cp.Problem(cp.Minimize(cp.sum_squares(x - v)), [x >= 0, cp.sum(x) == 1]).solve(
        solver=cp.CLARABEL)
    return np.asarray(x.value)


@pytest.mark.parametrize("v", [[0.2, 0.3, 0.5], [3.0, -1.0, 0.5, 0.49], [-5.0, -5.0, -5.0],
                               [1e20, 1e20, -1e20], [0.9, 0.1]])
def test_project_simplex_matches_qp(v):
    v = np.asarray(v)
    w = project_simplex(v)
    assert w.min() >= 0 and abs(w.sum() - 1) < 1e-12
    if np.abs(v).max() < 1e6:  # the QP solver itself is not accurate at 1e20
        assert np.allclose(w, simplex_projection_qp(v), atol=QP_TOL)
    else:
        assert np.allclose(w, [0.5, 0.5, 0.0])


def test_modo_follows_the_paper_update_over_steps():
    gamma, rho = 0.05, 0.1
    a = agg("modo", gamma=gamma, rho=rho)
    lam = np.full(3, 1 / 3)
    for step in range(4):
        J = make_J(3, 6, seed=step)
        d = a(J)
        G = (J @ J.T).numpy()
        lam = simplex_projection_qp(lam - gamma * (G @ lam + rho * lam))
        assert np.allclose(a._lambda.numpy(), lam, atol=QP_TOL)
        scale = float(J.norm(dim=1).max())
        assert torch.allclose(d, torch.as_tensor(lam) @ J, atol=QP_TOL * scale)
    assert float((a._lambda - 1 / 3).abs().max()) > 0.05  # the state moved from uniform


def test_modo_reset_and_task_count_change_restart_from_uniform():
    a, fresh = agg("modo", gamma=0.05), agg("modo", gamma=0.05)
    J = make_J(3, 6, seed=1)
    first = a(J)
    a(make_J(3, 6, seed=2))
    assert not torch.allclose(a(J), first)
    a.reset()
    assert a._lambda is None
    assert torch.allclose(a(J), first)
    J4 = make_J(4, 6, seed=3)
    assert torch.allclose(a(J4), fresh(J4))


def test_modo_is_not_linear_under_scaling():
    # why the property is not claimed: the λ-step scales with a²
    J = make_J(3, 6, seed=4)
    d1 = agg("modo", gamma=0.05)(J)
    d10 = agg("modo", gamma=0.05)(10 * J)
    assert not torch.allclose(d10, 10 * d1, rtol=1e-3)


@pytest.mark.parametrize("params", [{"gamma": 0.0}, {"gamma": -1.0}, {"rho": -0.1}])
def test_modo_rejects_bad_parameters(params):
    with pytest.raises(ConfigError):
        agg("modo", **params)


@pytest.mark.parametrize("check", checks_for(lambda: agg("modo")))
def test_modo_kit(check):
    torch.set_num_threads(1)
    run_check(lambda: agg("modo"), check, max_examples=8, max_tasks=12, max_dim=500)
