import numpy as np
import pytest
import torch
from mtlkit_plugins.aggregators.config import ConFIG

from mtlkit.testing.pytest_plugin import aggregator_suite
from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import gramian_cond, roundoff

test_config_properties = aggregator_suite(ConFIG, max_examples=8, max_tasks=20, max_dim=500)


def config_reference(J: torch.Tensor) -> np.ndarray:
    """The paper's Eq. 2 on the vectors: pseudo-inverse of the unit-row matrix (numpy SVD)."""
    A = J.double().numpy()
    U = A / np.linalg.norm(A, axis=1, keepdims=True)
    u = np.linalg.pinv(U) @ np.ones(A.shape[0])
    u_hat = u / np.linalg.norm(u)
    return float(np.sum(A @ u_hat)) * u_hat


def unit_cond(J: torch.Tensor) -> float:
    return gramian_cond(J / J.norm(dim=1, keepdim=True))


@pytest.mark.parametrize(("K", "n", "seed"), [(2, 5, 0), (3, 8, 1), (5, 12, 2), (10, 40, 3)])
def test_config_matches_the_papers_pseudo_inverse_form(K, n, seed):
    J = make_J(K, n, seed=seed)
    J[0] *= 50.0  # very different magnitudes: the direction must not follow the largest
    d = agg("config")(J).double().numpy()
    ref = config_reference(J)
    # both sides invert the unit Gramian: round-off times its condition number
    assert np.linalg.norm(d - ref) <= roundoff(J, unit_cond(J))


@pytest.mark.parametrize(("K", "n"), [(2, 3), (4, 9), (7, 20)])
def test_independent_rows_get_equal_positive_cosines(K, n):
    J = make_J(K, n, seed=K)
    d = agg("config")(J).double()
    cos = (J.double() @ d) / (J.double().norm(dim=1) * d.norm())
    assert float(cos.min()) > 0
    assert float(cos.max() - cos.min()) <= 1e3 * K * n * 2.2e-16 * unit_cond(J)
    # and the length is the sum of the projections on the direction (Eq. 2)
    u_hat = d / d.norm()
    assert abs(float(d.norm()) - float((J.double() @ u_hat).sum())) <= roundoff(J, unit_cond(J))


def test_dependent_rows_use_the_least_squares_direction_and_may_conflict():
    # u1 = e1, u2 = e2, u3 = -(e1 + e2)/√2 in R²: U u = 1 has no solution; the least-squares
    # u = c (1, 1), c = (1 - 1/√2)/2 > 0, conflicts with g3, and the length Σ g_k·û
    # = (2 + 0.5 - 6)/√2 < 0 flips d onto -û, against g1 and g2 (documented: ConFIG is
    # non-conflicting only for independent rows, so it does not claim it)
    J = torch.tensor([[2.0, 0.0], [0.0, 0.5], [-3.0, -3.0]], dtype=torch.float64)
    d = agg("config")(J).double().numpy()
    assert np.linalg.norm(d - config_reference(J)) <= roundoff(J, 10.0)
    assert d @ np.ones(2) < 0 and (J.double().numpy()[:2] @ d < 0).all()


def test_opposite_tasks_and_zero_rows():
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    assert float(agg("config")(torch.stack([g, -3 * g])).norm()) == 0.0
    # a zero gradient has a zero unit row: the other rows decide, as if it were absent
    J = torch.stack([g, torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, 1.0, 1.0],
                                                                          dtype=torch.float64)])
    d = agg("config")(J)
    assert torch.allclose(d, torch.as_tensor(config_reference(J[[0, 2]])), rtol=1e-12, atol=0)
