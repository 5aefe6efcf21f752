import pytest
import torch
from mtlkit_plugins.aggregators import _solvers
from mtlkit_plugins.aggregators.gradops import orthogonal_coefficients

from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import gramian_cond, roundoff


def projected_qr(J: torch.Tensor) -> torch.Tensor:
    """Independent reference: g'_i = g_i - Q Q^T g_i with Q from a QR of the other rows."""
    out = []
    for i in range(J.shape[0]):
        others = torch.cat([J[:i], J[i + 1:]])
        Q, _ = torch.linalg.qr(others.T)
        out.append(J[i] - Q @ (Q.T @ J[i]))
    return torch.stack(out)


@pytest.mark.parametrize(("K", "n"), [(2, 5), (3, 9), (6, 20)])
def test_projection_matches_qr_and_alpha_zero_is_their_mean(K, n):
    J = make_J(K, n, seed=K)
    P = projected_qr(J)
    A, _ = _solvers.as_normalized_numpy(J @ J.T)
    C = torch.as_tensor(orthogonal_coefficients(A, 1e-10))
    # the coefficients come from a pseudo-inverse of the Gramian: round-off times its condition
    tol = roundoff(J, cond=gramian_cond(J))
    assert float((C @ J - P).norm(dim=1).max()) <= tol
    assert float((agg("gradops", alpha=0.0)(J) - P.mean(0)).norm()) <= tol


def test_every_task_improves_by_its_own_share_only():
    J = make_J(5, 12, seed=4)
    d = agg("gradops", alpha=-3.0)(J)
    # exactly g_j·d = w_j ‖g'_j‖² >= 0; computed, up to round-off
    assert bool((J @ d >= -roundoff(J, cond=gramian_cond(J)) * float(d.norm())).all())


def test_dependent_rows_get_zero_projection_and_weight():
    J = make_J(3, 8, seed=1)
    J = torch.cat([J, (2 * J[0] - J[1])[None]])  # rows 0, 1, 3 are dependent; row 2 is not
    A, _ = _solvers.as_normalized_numpy(J @ J.T)
    C = torch.as_tensor(orthogonal_coefficients(A, 1e-10))
    assert not C[[0, 1, 3]].any()
    assert C[2].any()
    P = projected_qr(J[:3])  # the part of row 2 orthogonal to rows 0, 1 (and so to row 3)
    # one served task of four: its share is 1/4 whatever alpha
    tol = roundoff(J, cond=gramian_cond(J[:3]))
    assert float((agg("gradops", alpha=-3.0)(J) - P[2] / 4).norm()) <= tol


def test_negative_alpha_upweights_the_least_served_task():
    J = make_J(3, 10, seed=6)
    P = projected_qr(J)
    D = P.sum(0)
    R = (P.norm(dim=1) ** 2) / (J.norm(dim=1) * D.norm())
    worst = int(R.argmin())
    share = {a: float(J[worst] @ agg("gradops", alpha=a)(J)) / float(J[worst].norm())
             for a in (-3.0, 0.0, 3.0)}
    assert share[-3.0] > share[0.0] > share[3.0]


def reference_direction(J: torch.Tensor, alpha: float) -> torch.Tensor:
    """The documented weighting rule, computed independently of the module (QR projections,
    no Gramian): R_i = ‖g'_i‖² / (‖g_i‖ ‖Σ_j g'_j‖), w ∝ R^α, scaled to sum to 1 (all served)."""
    P = projected_qr(J)
    R = P.norm(dim=1) ** 2 / (J.norm(dim=1) * P.sum(0).norm())
    w = R ** alpha
    return (w / w.sum()) @ P


def test_closed_form_orthogonal_rows_alpha_minus_one_equalises_progress():
    # Orthogonal rows: g'_i = g_i, D = (3, 4), R = (3/5, 4/5); α = -1 gives w = (4/7, 3/7) and
    # d = (12/7, 12/7): both tasks improve by the same relative amount g_i·d / ‖g_i‖² ∝ 1/‖g_i‖.
    J = torch.tensor([[3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    expected = torch.tensor([12.0 / 7.0, 12.0 / 7.0], dtype=torch.float64)
    assert float((agg("gradops", alpha=-1.0)(J) - expected).norm()) <= roundoff(J)


@pytest.mark.parametrize(("alpha", "expected"), [(0.0, (0.25, 0.25)), (-2.0, (1.0 / 3.0, 0.0))])
def test_closed_form_two_conflict_free_rows(alpha, expected):
    # g_1 = (1, 0), g_2 = (1, 1): g'_1 = (1/2, -1/2), g'_2 = (0, 1), D = (1/2, 1/2), ‖D‖ = 1/√2,
    # R = (√2/2, 1). α = 0: d = (g'_1 + g'_2)/2 = (1/4, 1/4). α = -2: R^-2 = (2, 1),
    # w = (2/3, 1/3), d = (1/3, 0).
    J = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    d = agg("gradops", alpha=alpha)(J)
    assert float((d - torch.tensor(expected, dtype=torch.float64)).norm()) <= roundoff(J, cond=4.0)


@pytest.mark.parametrize(("K", "n", "alpha"), [(3, 7, -3.0), (5, 16, 2.0), (8, 30, -0.5)])
def test_matches_independent_reference(K, n, alpha):
    J = make_J(K, n, seed=10 + K)
    ref = reference_direction(J, alpha)
    # Both paths divide by the conditioning of the Gramian; R^α amplifies a relative error in R
    # by |α|, so the bound carries a factor (1 + |α|).
    tol = roundoff(J, cond=gramian_cond(J)) * (1.0 + abs(alpha)) * max(1.0, float(ref.norm()))
    assert float((agg("gradops", alpha=alpha)(J) - ref).norm()) <= tol
