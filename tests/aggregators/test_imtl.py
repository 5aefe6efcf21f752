"""IMTL (IMTL-L + IMTL-G) against the paper: the closed form of IMTL-G on the scaled
gradients e^s g (not the Gramian solve the aggregator reuses) and autograd of the IMTL-L
loss for the scales' gradient, over several steps."""

import pytest
import torch

from mtlkit.errors import ConfigError
from mtlkit.testing import checks_for, run_check
from tests.aggregators.helpers import agg, make_J
from tests.aggregators.test_imtl_g import imtl_g_paper

#: s is float32: one ulp per SGD step of values |s| < 4, over 4 steps
F32_ATOL = 4 * 4 * torch.finfo(torch.float32).eps


def test_imtl_follows_the_paper_over_steps():
    a = agg("imtl", num_tasks=3)
    (s,) = a.parameters()
    s_ref = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    lr = 0.3
    for step in range(4):
        J = make_J(3, 8, seed=40 + step)
        L = torch.tensor([0.2, 5.0, 1.0], dtype=torch.float64) * (1 + step)
        d = a(J, losses=L)
        # the scales as the aggregator holds them (float32; s vs s_ref is checked below)
        scaled = torch.exp(s.detach().double())[:, None] * J
        assert torch.allclose(d, imtl_g_paper(scaled), rtol=1e-7, atol=1e-9)  # as for imtl_g
        assert torch.allclose(s.detach().double(), s_ref.detach(), rtol=0, atol=F32_ATOL)
        (g_ref,) = torch.autograd.grad((torch.exp(s_ref) * L - s_ref).sum(), [s_ref])
        assert torch.allclose(s.grad.double(), g_ref, rtol=1e-6)
        with torch.no_grad():  # one SGD step on s, as the trainer's optimiser does
            s -= lr * s.grad
            s_ref -= lr * g_ref
        s.grad = None
    # IMTL-L drives e^s L towards 1: the task with the largest loss has the smallest scale
    sd = s.detach()
    assert float(sd[1]) < float(sd[2]) < float(sd[0])
    a.reset()
    assert s.grad is None and bool((s == 0).all())


def test_imtl_direction_is_imtl_g_and_the_scales_set_the_length():
    J = make_J(4, 9, seed=5)
    L = torch.ones(4, dtype=torch.float64)
    a = agg("imtl", num_tasks=4)
    with torch.no_grad():
        a.log_scales.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    d = a(J, losses=L)
    d_g = agg("imtl_g")(J)
    cos = float(d @ d_g / (d.norm() * d_g.norm()))
    assert abs(cos - 1) < 1e-6
    unit = J / J.norm(dim=1, keepdim=True)
    proj = unit @ d
    assert torch.allclose(proj, proj[0].expand(4), rtol=1e-6)
    with torch.no_grad():
        a.log_scales.zero_()
    assert torch.allclose(a(J, losses=L), d_g, rtol=1e-6)  # s = 0: exactly IMTL-G


def test_imtl_bad_configuration():
    with pytest.raises(ConfigError, match="num_tasks"):
        agg("imtl").parameters()
    with pytest.raises(ConfigError, match="num_tasks=0"):
        agg("imtl", num_tasks=0)
    with pytest.raises(ConfigError, match="losses"):
        agg("imtl")(make_J(2, 4))
    with pytest.raises(ConfigError, match="set up for 2 tasks"):
        agg("imtl", num_tasks=2)(make_J(3, 4), losses=torch.ones(3))


@pytest.mark.parametrize("check", checks_for(lambda: agg("imtl")))
def test_imtl_kit(check):
    torch.set_num_threads(1)
    run_check(lambda: agg("imtl"), check, max_examples=8, max_tasks=12, max_dim=500)
