import pytest
import torch

from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import gramian_cond, roundoff


def imtl_g_paper(J: torch.Tensor) -> torch.Tensor:
    """Independent reference, the paper's closed form on J: with D = [g1 - gk], U = [u1 - uk]
    (k = 2..K), α_{2:K} = g1 U^T (D U^T)^{-1}, α_1 = 1 - Σ α_{2:K}."""
    U = J / J.norm(dim=1, keepdim=True)
    D = J[:1] - J[1:]
    Ud = U[:1] - U[1:]
    a = J[0] @ Ud.T @ torch.linalg.inv(D @ Ud.T)
    alpha = torch.cat([1 - a.sum()[None], a])
    return alpha @ J


@pytest.mark.parametrize(("K", "n"), [(2, 5), (3, 7), (6, 15)])
def test_imtl_g_matches_paper_closed_form(K, n):
    J = make_J(K, n, seed=K + 10)
    d = agg("imtl_g")(J)
    # both sides invert a K x K system built from J: round-off times the Gramian's condition
    tol = roundoff(J, cond=gramian_cond(J))
    assert float((d - imtl_g_paper(J)).norm()) <= tol
    proj = (J / J.norm(dim=1, keepdim=True)) @ d
    assert float((proj - proj[0]).abs().max()) <= tol
