import cvxpy as cp
import numpy as np
import pytest
import torch

from tests.aggregators.helpers import agg, has_conflict, make_J


def upgrad_cvxpy(J: torch.Tensor) -> np.ndarray:
    """Independent reference: project every g_k onto {x : J x >= 0} in R^n, then average."""
    A = J.double().numpy()
    out = []
    for g in A:
        x = cp.Variable(A.shape[1])
        cp.Problem(cp.Minimize(cp.sum_squares(x - g)), [A @ x >= 0]).solve(solver="CLARABEL")
        out.append(x.value)
    return np.mean(out, axis=0)


@pytest.mark.parametrize(("K", "n"), [(2, 4), (3, 6), (5, 12), (8, 5)])
def test_upgrad_matches_cvxpy_dual_cone_projection(K, n):
    J = make_J(K, n, seed=K * 3)
    assert has_conflict(J)
    d = agg("upgrad")(J).numpy()
    ref = upgrad_cvxpy(J)
    assert np.linalg.norm(d - ref) <= 1e-5 * float(J.norm(dim=1).max())
