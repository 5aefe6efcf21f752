"""PSMGD against its schedule: MGDA's min-norm weights (certified cvxpy + Clarabel reference)
on recomputation steps, the same weights applied to the new Jacobians in between."""

import math

import cvxpy as cp
import numpy as np
import pytest
import torch
from mtlkit_plugins.aggregators import _solvers

from mtlkit.errors import ConfigError
from mtlkit.testing.pytest_plugin import aggregator_suite
from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import argmin_radius, roundoff, solve_certified

test_psmgd_properties = aggregator_suite(lambda: agg("psmgd"), max_examples=8, max_tasks=12,
                                         max_dim=300)


def min_norm_weights_ref(J: torch.Tensor) -> tuple[np.ndarray, float]:
    """Certified min-norm weights of a full-row-rank J and a bound on their error: the point
    d* = J^T w* is within sqrt(2 gap / 2) (2-strong convexity in d), and w = (J^T)^+ d moves
    by at most that over σ_min(J)."""
    A = J.double().numpy()
    w = cp.Variable(A.shape[0], nonneg=True)
    gap = solve_certified(cp.Problem(cp.Minimize(cp.sum_squares(A.T @ w)), [cp.sum(w) == 1]))
    return np.asarray(w.value), argmin_radius(gap, 2.0)


def weight_error_bound(J: torch.Tensor, radius: float) -> float:
    sq = (J.double() ** 2).sum(1)
    s = float(sq.mean())
    contract = s * _solvers.GAP_TOL * max(1.0, float(sq.max()) / s)  # MGDA's documented gap
    smin = float(torch.linalg.svdvals(J.double()).min())
    return (math.sqrt(2 * contract) + radius + roundoff(J)) / smin


@pytest.mark.parametrize("K,period", [(2, 3), (3, 2), (5, 4)])
def test_psmgd_recomputes_every_period_and_reuses_in_between(K, period):
    a = agg("psmgd", period=period)
    for block in range(2):
        J0 = make_J(K, 3 * K, seed=10 * block)  # n > K, full row rank: unique weights
        w_ref, radius = min_norm_weights_ref(J0)
        tol_w = weight_error_bound(J0, radius)
        for t in range(period):
            J = J0 if t == 0 else make_J(K, 3 * K, seed=10 * block + t)
            d = a(J)
            ref = torch.as_tensor(w_ref) @ J
            bound = tol_w * float(torch.linalg.matrix_norm(J, ord=2)) + roundoff(J)
            assert float((d - ref).norm()) <= bound, (block, t)


def test_psmgd_period_one_is_mgda_and_reset_restarts_the_schedule():
    Js = [make_J(3, 8, seed=s) for s in range(3)]
    a, m = agg("psmgd", period=1), agg("mgda")
    for J in Js:
        assert torch.allclose(a(J), m(J), atol=1e-12)
    b = agg("psmgd", period=5)
    first = b(Js[0])
    stale = b(Js[1])  # weights of Js[0] on Js[1]
    b.reset()
    assert torch.equal(b(Js[0]), first)
    assert not torch.allclose(stale, m(Js[1]), atol=1e-6)  # reuse is not a recomputation


def test_psmgd_reused_weights_may_conflict():
    # why non_conflicting is not claimed: weights from J0 applied to a J1 that disagrees
    a = agg("psmgd", period=2)
    J0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    J1 = torch.tensor([[1.0, 0.0], [-3.0, 0.1]], dtype=torch.float64)
    a(J0)
    d = a(J1)
    assert float((J1 @ d).min()) < 0


def test_psmgd_task_count_change_recomputes():
    a = agg("psmgd", period=10)
    a(make_J(3, 8, seed=1))
    J4 = make_J(4, 8, seed=2)
    assert torch.allclose(a(J4), agg("mgda")(J4), atol=1e-12)


@pytest.mark.parametrize("params,match", [({"period": 0}, "period=0"), ({"period": 1.5}, "period"),
                                          ({"solver": "adam"}, "solver")])
def test_psmgd_rejects_bad_parameters(params, match):
    with pytest.raises(ConfigError, match=match):
        agg("psmgd", **params)
