import math

import pytest
import torch
from mtlkit_plugins.aggregators.fairgrad import RESIDUAL_TOL, FairGrad

from mtlkit.errors import ConfigError
from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import roundoff


def certified_weights(J: torch.Tensor, alpha: float) -> tuple[torch.Tensor, float]:
    """FairGrad's weights ``w`` for ``J`` and the bound its certificate gives on ``‖δd‖``.

    FairGrad accepts ``w_n`` (normalised Gramian ``A = G/s``) only with residual
    ``‖A w_n - w_n^{-p}‖ <= RESIDUAL_TOL·max(1, ‖w_n^{-p}‖)`` (``p = 1/α``); ``w`` and both
    sides scale by ``s^{1/(α+1)}`` from there. To first order ``δw = H^{-1} r`` with
    ``H = G + p diag(w^{-p-1}) >= p diag(w^{-p-1})``, so
    ``‖J^T δw‖² <= rᵀH^{-1}r <= ‖r‖² max_k w_k^{p+1} / p``.
    """
    p = 1.0 / alpha
    G = J @ J.T
    w = FairGrad(alpha=alpha).weights(G, {})
    s = float(G.diagonal().mean())
    w_n = w * s ** (alpha / (alpha + 1))
    allowed = RESIDUAL_TOL * max(1.0, float((w_n ** -p).norm())) * s ** (1 / (alpha + 1))
    resid = float((G @ w - w ** -p).norm())
    assert resid <= allowed + roundoff(J) * float(w.abs().max())  # the certificate holds
    return w, allowed * math.sqrt(float((w ** (p + 1)).max()) / p)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_fairgrad_solves_its_optimality_condition_on_the_true_gramian(alpha):
    J = make_J(4, 12, seed=3, conflict=False)
    w, _ = certified_weights(J, alpha)
    d = agg("fairgrad", alpha=alpha)(J)
    assert float((d - w @ J).norm()) <= roundoff(J) * float(w.abs().max())


def test_alpha_one_is_the_nash_bargaining_solution():
    J = make_J(3, 9, seed=5, conflict=False)
    _, fair_radius = certified_weights(J, 1.0)
    nash = agg("nash_mtl")
    nash_radius = math.sqrt(3) * nash.tol  # see test_nash_mtl.ours_radius
    d_fair, d_nash = agg("fairgrad", alpha=1.0)(J), nash(J)
    assert float((d_fair - d_nash).norm()) <= fair_radius + nash_radius + roundoff(J)


def test_scaling_law():
    J = make_J(3, 7, seed=2, conflict=False)
    for alpha in (0.5, 2.0):
        factor = 10 ** ((1 - alpha) / (1 + alpha))
        _, r1 = certified_weights(J, alpha)
        _, r10 = certified_weights(10 * J, alpha)
        d, da = agg("fairgrad", alpha=alpha)(J), agg("fairgrad", alpha=alpha)(10 * J)
        assert float((da - d * factor).norm()) <= r10 + factor * r1 + roundoff(10 * J)


def test_bad_alpha():
    with pytest.raises(ConfigError, match="alpha"):
        agg("fairgrad", alpha=0)
