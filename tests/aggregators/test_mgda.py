import cvxpy as cp
import numpy as np
import pytest
import torch
from mtlkit_plugins.aggregators import _solvers

from mtlkit.errors import ConfigError, GradientError
from tests.aggregators.helpers import agg, make_J


def min_norm_cvxpy(J: torch.Tensor) -> np.ndarray:
    """Independent reference: min ‖J^T w‖ over the simplex, on J itself (no Gramian)."""
    A = J.double().numpy()
    w = cp.Variable(A.shape[0], nonneg=True)
    cp.Problem(cp.Minimize(cp.sum_squares(A.T @ w)), [cp.sum(w) == 1]).solve(solver="CLARABEL")
    return A.T @ w.value


@pytest.mark.parametrize(("K", "n", "seed"), [(2, 5, 0), (3, 10, 1), (5, 4, 2), (10, 30, 3),
                                              (40, 60, 4), (12, 3, 5)])
@pytest.mark.parametrize("solver", ["qp", "frank_wolfe"])
def test_mgda_matches_cvxpy_min_norm(K, n, seed, solver):
    J = make_J(K, n, seed)
    d = agg("mgda", solver=solver)(J).numpy()
    ref = min_norm_cvxpy(J)
    scale = float(J.norm(dim=1).max())
    assert np.linalg.norm(d - ref) <= 1e-5 * scale


def test_two_task_closed_form_equals_general_qp():
    for seed in range(10):
        J = make_J(2, 6, seed)
        A, _ = _solvers.as_normalized_numpy(J @ J.T)
        assert np.allclose(_solvers.min_norm_2(A), _solvers.min_norm_qp(A), atol=1e-7)


def test_mgda_zero_at_pareto_stationary_point():
    g = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    J = torch.stack([g, -2 * g, torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)])
    assert float(agg("mgda")(J).norm()) < 1e-8


def test_mgda_refuses_an_unconverged_answer(monkeypatch):
    bad = lambda G, *a, **k: np.eye(G.shape[0])[0]  # a vertex: far from optimal  # noqa: E731
    monkeypatch.setattr(_solvers, "min_norm_qp", bad)
    monkeypatch.setattr(_solvers, "min_norm_frank_wolfe", bad)
    with pytest.raises(GradientError, match="did not converge"):
        agg("mgda")(make_J(5, 8))


def test_bad_solver_name_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"solver='cvx'.*'qp', 'frank_wolfe'"):
        agg("mgda", solver="cvx")
