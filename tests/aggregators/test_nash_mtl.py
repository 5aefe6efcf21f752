import cvxpy
import numpy as np
import pytest
import torch
from scipy.optimize import least_squares

from mtlkit.errors import ConfigError, GradientError
from tests.aggregators.helpers import agg, make_J


def bargaining_reference(J: torch.Tensor) -> np.ndarray:
    """Independent reference: solve G α = 1/α directly (root finding, α > 0)."""
    G = (J @ J.T).numpy()
    res = least_squares(lambda a: G @ a - 1 / a, np.ones(len(G)), bounds=(1e-12, np.inf),
                        xtol=1e-15, ftol=1e-15, gtol=1e-15)
    return res.x @ J.numpy()


@pytest.mark.parametrize(("K", "n"), [(2, 5), (3, 8), (5, 12)])
def test_nash_mtl_solves_the_bargaining_equation(K, n):
    J = make_J(K, n, seed=K, conflict=False)
    a = agg("nash_mtl", tol=1e-7)
    d = a(J)
    ref = bargaining_reference(J)
    assert np.linalg.norm(d.numpy() - ref) <= 1e-4 * np.linalg.norm(ref)
    assert bool((J @ d > 0).all())


def test_nash_mtl_starts_feasibly_when_a_task_conflicts_with_the_sum():
    # (G 1)_k < 0 for a task: the reference code's start at ones is infeasible there
    J = torch.tensor([[1.0, 0.0], [-2.0, 0.2]], dtype=torch.float64)
    assert float((J @ J.T).sum(1).min()) < 0
    d = agg("nash_mtl", tol=1e-8)(J)
    assert np.linalg.norm(d.numpy() - bargaining_reference(J)) < 1e-4 * float(d.norm())


def test_pareto_stationary_gives_zero_and_zero_rows_get_zero_weight():
    g = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert float(agg("nash_mtl")(torch.stack([g, -g])).norm()) == 0.0
    J = torch.stack([g, torch.zeros(2, dtype=torch.float64), torch.tensor([0.5, -1.0])])
    d = agg("nash_mtl", tol=1e-8)(J)
    assert np.allclose(d.numpy(), bargaining_reference(J[[0, 2]]), rtol=1e-4)


def test_state_warm_start_and_reset():
    J = make_J(3, 6, seed=2, conflict=False)
    a = agg("nash_mtl", update_weights_every=2)
    d1 = a(J)
    d2 = a(2 * J)  # reused weights on step 2 (not recomputed)
    assert torch.allclose(d2, 2 * d1)
    a.reset()
    assert torch.allclose(a(2 * J), d1, rtol=1e-3)  # recomputed: scale-invariant solution


def test_solver_failure_raises_or_warns_loudly(monkeypatch):
    def boom(self, *args, **kwargs):
        raise RuntimeError("solver exploded")

    J = make_J(3, 6, seed=1, conflict=False)
    monkeypatch.setattr(cvxpy.Problem, "solve", boom)
    with pytest.raises(GradientError, match="solver exploded"):
        agg("nash_mtl")(J)
    with pytest.warns(RuntimeWarning, match="solver exploded"):
        d = agg("nash_mtl", on_failure="warn")(J)
    assert torch.allclose(d, J.mean(0))


def test_missing_solver_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"solver='NOSUCH'.*installed cvxpy solvers"):
        agg("nash_mtl", solver="NOSUCH")
