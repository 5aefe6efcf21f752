"""MoCo against Alg. 1 of the paper computed step by step (cvxpy + Clarabel projection)."""

import numpy as np
import pytest
import torch

from mtlkit.errors import ConfigError
from mtlkit.testing import checks_for, run_check
from tests.aggregators.helpers import agg, make_J
from tests.aggregators.test_modo import QP_TOL, simplex_projection_qp


def run_reference(Js, losses, beta=0.5, beta_sigma=0.5, gamma=0.1, gamma_sigma=0.5, rho=0.0,
                  normalize=False):
    K, n = Js[0].shape
    y = torch.zeros(K, n, dtype=torch.float64)
    lam = np.full(K, 1 / K)
    out = []
    for t, (J, L) in enumerate(zip(Js, losses), start=1):
        h = J / J.norm(dim=1, keepdim=True) * L[:, None] if normalize else J
        y = y - beta / t**beta_sigma * (y - h)
        YY = (y @ y.T).numpy()
        lam = simplex_projection_qp(lam - gamma / t**gamma_sigma * (YY + rho * np.eye(K)) @ lam)
        out.append((torch.as_tensor(lam) @ y, lam))
    return out


@pytest.mark.parametrize("normalize", [False, True])
def test_moco_follows_algorithm_1_over_steps(normalize):
    params = {"beta": 0.6, "beta_sigma": 0.3, "gamma": 0.05, "gamma_sigma": 0.5, "rho": 0.2,
              "normalize": normalize}
    Js = [make_J(3, 6, seed=30 + t) for t in range(4)]
    losses = [torch.tensor([0.5, 1.5, 1.0], dtype=torch.float64) * (t + 1) for t in range(4)]
    ref = run_reference(Js, losses, **params)
    a = agg("moco", **params)
    for J, L, (d_ref, lam_ref) in zip(Js, losses, ref):
        d = a(J, losses=L)
        assert np.allclose(a._lambda.numpy(), lam_ref, atol=QP_TOL)
        scale = float(max(Jt.norm(dim=1).max() for Jt in Js)) * (6.0 if normalize else 1.0)
        assert torch.allclose(d, d_ref, atol=QP_TOL * scale)
    assert a._t == 4


def test_moco_update_is_the_tracked_combination_not_of_the_current_jacobian():
    a = agg("moco")
    J1, J2 = make_J(2, 5, seed=1), make_J(2, 5, seed=2)
    a(J1)
    d = a(J2)
    # Y_2 = (1 - β_2) Y_1 + β_2 J2 with Y_1 = β_1 J1 (β_1 = 0.5, β_2 = 0.5/√2)
    b2 = 0.5 / 2**0.5
    Y2 = (1 - b2) * 0.5 * J1 + b2 * J2
    assert torch.allclose(a._y, Y2)
    assert torch.allclose(d, a._lambda @ Y2)


def test_moco_state_restarts_on_reset_and_on_a_new_shape():
    a = agg("moco")
    J = make_J(3, 6, seed=3)
    first = a(J)
    a(make_J(3, 6, seed=4))
    assert a._t == 2 and not torch.allclose(a(J), first)
    a.reset()
    assert a._y is None and a._t == 0
    assert torch.allclose(a(J), first)
    Jn = make_J(3, 8, seed=5)  # a new trainable set (mask change): tracking restarts
    assert torch.allclose(a(Jn), agg("moco")(Jn)) and a._t == 1


def test_moco_normalize_needs_losses():
    with pytest.raises(ConfigError, match="losses"):
        agg("moco", normalize=True)(make_J(2, 4))


@pytest.mark.parametrize("params", [{"beta": 0.0}, {"beta": 1.5}, {"gamma": 0.0},
                                    {"rho": -1.0}, {"beta_sigma": -0.5}, {"normalize": "yes"}])
def test_moco_rejects_bad_parameters(params):
    with pytest.raises(ConfigError):
        agg("moco", **params)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("check", checks_for(lambda: agg("moco")))
def test_moco_kit(check, normalize):
    torch.set_num_threads(1)
    run_check(lambda: agg("moco", normalize=normalize), check, max_examples=8, max_tasks=12,
              max_dim=500)

