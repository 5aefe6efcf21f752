"""DB-MTL against the paper's update computed step by step, with the log-loss gradients taken
by autograd (not from J / L)."""

import pytest
import torch

from mtlkit.errors import ConfigError, GradientError
from mtlkit.testing import checks_for, run_check
from tests.aggregators.helpers import agg, make_J


def problem(K: int = 3, n: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(K, 4, n, generator=g, dtype=torch.float64)
    # loss scales 1, 100, 0.01: what the log balances
    scales = torch.tensor([1.0, 10.0, 0.1], dtype=torch.float64)
    b = torch.randn(K, 4, generator=g, dtype=torch.float64) * scales[:, None]

    def losses(theta):
        return ((A @ theta - b) ** 2).sum(dim=1) + 0.05

    return losses


def test_db_mtl_follows_the_paper_over_steps():
    beta, sigma, eps = 0.8, 0.5, 1e-8
    losses = problem()
    a = agg("db_mtl", beta=beta, beta_sigma=sigma, eps=eps)
    ema = torch.zeros(3, 5, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    for t in range(1, 5):
        theta = torch.randn(5, generator=gen, dtype=torch.float64, requires_grad=True)
        L = losses(theta)
        J = torch.stack([torch.autograd.grad(L[k], theta, retain_graph=True)[0]
                         for k in range(3)])
        g_log = torch.stack([torch.autograd.grad(torch.log(L[k] + eps), theta,
                                                 retain_graph=True)[0] for k in range(3)])
        b_t = beta / t**sigma
        ema = b_t * ema + (1 - b_t) * g_log
        norms = ema.norm(dim=1)
        d_ref = (norms.max() / norms) @ ema
        d = a(J, losses=L.detach())
        assert torch.allclose(a._buffer, ema, rtol=1e-12, atol=0)
        assert torch.allclose(d, d_ref, rtol=1e-12, atol=1e-15 * float(d_ref.norm()))
    # every task's share has the largest norm: the balance the method is named for
    shares = (norms.max() / norms)[:, None] * ema
    assert torch.allclose(shares.norm(dim=1), norms.max().expand(3))
    assert a._t == 4


def test_db_mtl_first_step_closed_form():
    # ĝ_1 = (1 - β) g/L, so d = (1 - β) max_k ‖g_k/L_k‖ Σ_k g_k/‖g_k‖: the loss scale cancels
    J = make_J(4, 7, seed=2)
    L = torch.tensor([0.1, 1.0, 10.0, 3.0], dtype=torch.float64)
    d = agg("db_mtl")(J, losses=L)
    unit = J / J.norm(dim=1, keepdim=True)
    top = (J.norm(dim=1) / (L + 1e-8)).max()
    assert torch.allclose(d, 0.1 * top * unit.sum(0), rtol=1e-12)


def test_db_mtl_state_restarts_on_reset_and_new_shape():
    a = agg("db_mtl")
    J, L = make_J(3, 6, seed=3), torch.ones(3)
    first = a(J, losses=L)
    second = a(J, losses=L)
    assert torch.allclose(second, first * 1.9)  # ĝ_2 = 0.9·0.1 g + 0.1 g = 0.19 g
    a.reset()
    assert a._buffer is None and torch.allclose(a(J, losses=L), first)
    J2 = make_J(3, 9, seed=4)
    assert torch.allclose(a(J2, losses=L), agg("db_mtl")(J2, losses=L)) and a._t == 1


def test_db_mtl_bad_input():
    J = make_J(2, 4)
    with pytest.raises(ConfigError, match="losses"):
        agg("db_mtl")(J)
    with pytest.raises(GradientError, match="log"):
        agg("db_mtl")(J, losses=torch.tensor([-1.0, 1.0]))
    with pytest.raises(ConfigError):
        agg("db_mtl", beta=1.0)
    with pytest.raises(ConfigError):
        agg("db_mtl", beta_sigma=-1.0)


@pytest.mark.parametrize("check", checks_for(lambda: agg("db_mtl")))
def test_db_mtl_kit(check):
    torch.set_num_threads(1)
    run_check(lambda: agg("db_mtl"), check, max_examples=8, max_tasks=12, max_dim=500)
