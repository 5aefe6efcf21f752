import math

import numpy as np
import pytest
import torch
from mtlkit_plugins.aggregators import _solvers

from mtlkit.errors import ConfigError, GradientError
from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import EPS64, min_norm_point, roundoff


def mgda_contract(J: torch.Tensor) -> float:
    """The Frank-Wolfe gap ``‖d‖² - min_k g_k·d`` MGDA promises: GAP_TOL·max(1, max diag) on
    the Gramian normalised by ``s`` = mean ‖g_k‖², i.e. ``s`` times that here. For ``d`` in the
    convex hull, ``‖d - d*‖² <= ‖d‖² - ‖d*‖² <= 2 · gap``."""
    sq = (J.double() ** 2).sum(1)
    s = float(sq.mean())
    return s * _solvers.GAP_TOL * max(1.0, float(sq.max()) / s)


@pytest.mark.parametrize(("K", "n", "seed"), [(2, 5, 0), (3, 10, 1), (5, 4, 2), (10, 30, 3),
                                              (40, 60, 4), (12, 3, 5)])
@pytest.mark.parametrize("solver", ["qp", "frank_wolfe"])
def test_mgda_matches_cvxpy_min_norm(K, n, seed, solver):
    J = make_J(K, n, seed)
    d = agg("mgda", solver=solver)(J).double()
    contract = mgda_contract(J)
    gap = float(d @ d - (J @ d).min())
    assert gap <= contract + roundoff(J) ** 2  # the solver met its own stopping criterion
    ref, radius = min_norm_point(J)
    tol = math.sqrt(2 * contract) + radius + roundoff(J)
    assert np.linalg.norm(d.numpy() - ref) <= tol


def test_two_task_closed_form_equals_general_qp():
    for seed in range(10):
        J = make_J(2, 6, seed)
        A, _ = _solvers.as_normalized_numpy(J @ J.T)
        # the QP solves the ridged problem exactly: its γ moves by RIDGE·|γ - ½|/denominator
        # (the ridge's pull towards ½), plus round-off in a 2 x 2 solve
        denom = A[0, 0] + A[1, 1] - 2 * A[0, 1]
        tol = (2 * _solvers.RIDGE + 1e3 * EPS64) / denom
        assert np.abs(_solvers.min_norm_2(A) - _solvers.min_norm_qp(A)).max() <= tol


def test_mgda_zero_at_pareto_stationary_point():
    g = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    J = torch.stack([g, -2 * g, torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)])
    # 0 is in the hull: ‖d‖² = ‖d - d*‖² <= 2·gap <= 2·contract (see mgda_contract)
    assert float(agg("mgda")(J).norm()) <= math.sqrt(2 * mgda_contract(J)) + roundoff(J)


def test_mgda_refuses_an_unconverged_answer(monkeypatch):
    bad = lambda G, *a, **k: np.eye(G.shape[0])[0]  # a vertex: far from optimal  # noqa: E731
    monkeypatch.setattr(_solvers, "min_norm_qp", bad)
    monkeypatch.setattr(_solvers, "min_norm_frank_wolfe", bad)
    with pytest.raises(GradientError, match="did not converge"):
        agg("mgda")(make_J(5, 8))


def test_bad_solver_name_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"solver='cvx'.*'qp', 'frank_wolfe'"):
        agg("mgda", solver="cvx")
