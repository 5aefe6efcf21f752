import math

import cvxpy as cp
import numpy as np
import pytest
import torch
from mtlkit_plugins.aggregators import nash_mtl

from mtlkit.errors import ConfigError, GradientError
from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import argmin_radius, roundoff, solve_certified


def bargaining_reference(J: torch.Tensor) -> tuple[np.ndarray, float]:
    """Independent reference, the paper's primal in R^n: ``max Σ_k log(g_k·d)`` s.t.
    ``‖d‖² <= K`` (cvxpy + Clarabel, certified). Its KKT conditions give ``d = Σ α_k g_k`` with
    ``α_k (Gα)_k = 1`` and the multiplier of the ball ½, so the Lagrangian is 1-strongly concave
    and ``radius = argmin_radius(gap, 1)`` bounds the distance to the exact solution."""
    A = J.double().numpy()
    K = A.shape[0]
    x = cp.Variable(A.shape[1])
    gap = solve_certified(cp.Problem(cp.Maximize(cp.sum(cp.log(A @ x))),
                                     [cp.sum_squares(x) <= K]))
    return x.value, argmin_radius(gap, 1.0)


def ours_radius(J: torch.Tensor, tol: float) -> float:
    """Nash-MTL certifies ``|α_k (Gα)_k - 1| <= tol``, i.e. residual ``r_k <= tol/α_k`` of
    ``Gα = 1/α``. To first order ``δα = H^{-1} r`` with ``H = G + diag(1/α²) >= diag(1/α²)``, so
    ``‖J^T δα‖² <= rᵀH^{-1}r <= Σ_k α_k² r_k² <= K tol²``."""
    return math.sqrt(J.shape[0]) * tol + roundoff(J)


@pytest.mark.parametrize(("K", "n"), [(2, 5), (3, 8), (5, 12)])
def test_nash_mtl_solves_the_bargaining_problem(K, n):
    J = make_J(K, n, seed=K, conflict=False)
    a = agg("nash_mtl")
    d = a(J)
    ref, radius = bargaining_reference(J)
    assert np.linalg.norm(d.numpy() - ref) <= radius + ours_radius(J, a.tol)
    assert bool((J @ d > 0).all())


def test_nash_mtl_starts_feasibly_when_a_task_conflicts_with_the_sum():
    # (G 1)_k < 0 for a task: the reference code's start at ones is infeasible there
    J = torch.tensor([[1.0, 0.0], [-2.0, 0.2]], dtype=torch.float64)
    assert float((J @ J.T).sum(1).min()) < 0
    a = agg("nash_mtl")
    ref, radius = bargaining_reference(J)
    assert np.linalg.norm(a(J).numpy() - ref) <= radius + ours_radius(J, a.tol)


def test_pareto_stationary_gives_zero_and_zero_rows_get_zero_weight():
    g = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert float(agg("nash_mtl")(torch.stack([g, -g])).norm()) == 0.0
    J = torch.stack([g, torch.zeros(2, dtype=torch.float64), torch.tensor([0.5, -1.0])])
    a = agg("nash_mtl")
    ref, radius = bargaining_reference(J[[0, 2]])
    assert np.linalg.norm(a(J).numpy() - ref) <= radius + ours_radius(J[[0, 2]], a.tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("conflict", [False, True])
def test_large_random_instances_solve_with_their_certificate(dtype, conflict):
    """K = 40 tasks, n = 1e5 Gaussian Jacobian (the cvxpy sequence reported
    'optimal_inaccurate' here): the solution meets α_k (Gα)_k = 1 to the solver's tol."""
    J = make_J(40, 100_000, seed=7, conflict=conflict).to(dtype)
    a = agg("nash_mtl")
    G = J.double() @ J.double().T
    alpha = a.weights(J @ J.T, {}).double()
    # the solver's certificate is on its own float64 copy of J J^T: a float32 Gramian differs
    # from the exact one by ~n·eps32 relative, which moves α_k (Gα)_k by as much
    slack = a.tol + (40 * 100_000 * float(torch.finfo(dtype).eps) if dtype == torch.float32
                     else roundoff(J.double()) / float(G.diagonal().min()))
    assert float((alpha * (G @ alpha) - 1).abs().max()) <= slack


def test_state_warm_start_and_reset():
    J = make_J(3, 6, seed=2, conflict=False)
    a = agg("nash_mtl", update_weights_every=2)
    d1 = a(J)
    d2 = a(2 * J)  # reused weights on step 2 (not recomputed)
    assert torch.allclose(d2, 2 * d1, rtol=0, atol=roundoff(J))
    a.reset()
    # recomputed: the solution is scale-invariant; both meet the certificate
    assert float((a(2 * J) - d1).norm()) <= 2 * ours_radius(2 * J, a.tol)


def test_solver_failure_raises_or_warns_loudly():
    J = make_J(6, 9, seed=1, conflict=True)
    with pytest.raises(GradientError, match="did not converge"):
        agg("nash_mtl", max_iter=1)(J)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        d = agg("nash_mtl", max_iter=1, on_failure="warn")(J)
    assert torch.allclose(d, J.mean(0))


def test_newton_iteration_count_is_modest():
    """Damped Newton on the self-concordant potential: a handful of steps, not hundreds."""
    J = make_J(40, 200, seed=3, conflict=True)
    A = (J @ J.T).numpy() / float((J * J).sum(1).mean())
    start = np.full(40, 1.0)
    nash_mtl.bargaining_weights(A, start, 1e-8, 60)  # raises if 60 steps do not suffice


@pytest.mark.parametrize(("field", "value"), [("max_iter", 0), ("tol", 0.0),
                                              ("update_weights_every", 0),
                                              ("on_failure", "ignore")])
def test_bad_hyper_parameters_are_one_clear_error(field, value):
    with pytest.raises(ConfigError, match=field):
        agg("nash_mtl", **{field: value})
