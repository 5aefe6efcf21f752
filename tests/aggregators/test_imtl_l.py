"""IMTL-L against its objective Σ e^{s_k} L_k - s_k, differentiated by autograd in L and s."""

import pytest
import torch

from mtlkit.errors import ConfigError
from mtlkit.testing.pytest_plugin import aggregator_suite
from tests.aggregators.helpers import agg
from tests.aggregators.scalarizer_refs import random_losses, weight_tol

test_imtl_l_properties = aggregator_suite(lambda: agg("imtl_l"), max_examples=10, max_tasks=12,
                                          max_dim=300)


@pytest.mark.parametrize("K,seed", [(2, 0), (4, 1), (7, 2)])
def test_imtl_l_weights_and_scale_gradient_match_autograd(K, seed):
    a = agg("imtl_l", num_tasks=K)
    (s,) = a.parameters()
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        s.copy_(torch.randn(K, generator=g))
    L = random_losses(K, seed)
    w = a.loss_weights(L, {})
    ref_s = s.detach().double().clone().requires_grad_(True)
    ref_L = L.clone().requires_grad_(True)
    (torch.exp(ref_s) * ref_L - ref_s).sum().backward()
    assert float((w - ref_L.grad).abs().max()) <= weight_tol(ref_L.grad, K)
    # s.grad is float32 (the parameter's dtype): one rounding of an O(e^{s} L) number
    assert torch.allclose(s.grad.double(), ref_s.grad, rtol=4 * 2.0**-24, atol=4 * 2.0**-24)
    # a second call accumulates, as autograd would over two backward passes
    a.loss_weights(L, {})
    assert torch.allclose(s.grad.double(), 2 * ref_s.grad, rtol=1e-6, atol=1e-6)
    a.reset()
    assert s.grad is None and float(s.detach().abs().sum()) == 0.0


def test_imtl_l_stationary_scales_equalise_the_scaled_losses():
    # why IMTL-L balances: ∂S/∂s_k = 0 at s_k = -log L_k, where every e^{s_k} L_k = 1
    L = torch.tensor([0.02, 1.0, 30.0], dtype=torch.float64)
    a = agg("imtl_l", num_tasks=3)
    (s,) = a.parameters()
    with torch.no_grad():
        s.copy_(-torch.log(L))
    w = a.loss_weights(L, {})
    assert torch.allclose(w * L, torch.ones(3, dtype=torch.float64), rtol=1e-6)
    assert float(s.grad.abs().max()) <= 1e-6  # float32 parameters: ~eps32 · |s|


def test_imtl_l_needs_the_task_count_and_a_matching_loss_vector():
    with pytest.raises(ConfigError, match="num_tasks"):
        agg("imtl_l").parameters()
    with pytest.raises(ConfigError, match="num_tasks=0"):
        agg("imtl_l", num_tasks=0)
    with pytest.raises(ConfigError, match="2 tasks, got 3"):
        agg("imtl_l", num_tasks=2).loss_weights(torch.ones(3), {})
