import pytest
import torch

from mtlkit.errors import ConfigError
from tests.aggregators.helpers import agg


def test_uw_weights_and_log_variance_gradient_match_autograd():
    a = agg("uw", num_tasks=3)
    (s,) = a.parameters()
    with torch.no_grad():
        s.copy_(torch.tensor([0.0, 0.5, -1.0]))
    L = torch.tensor([0.7, 2.0, 0.1], dtype=torch.float64)
    w = a.loss_weights(L, {})
    ref_s = s.detach().double().clone().requires_grad_(True)
    Lr = L.clone().requires_grad_(True)
    total = (0.5 * torch.exp(-ref_s) * Lr + 0.5 * ref_s).sum()
    total.backward()
    assert torch.allclose(w, Lr.grad)  # weights = dL/dL_k
    assert torch.allclose(s.grad.double(), ref_s.grad, atol=1e-6)
    a.reset()
    assert s.grad is None and float(s.detach().abs().sum()) == 0.0


def test_uw_needs_the_task_count_before_training():
    with pytest.raises(ConfigError, match="num_tasks"):
        agg("uw").parameters()
    with pytest.raises(ConfigError, match="num_tasks=0"):
        agg("uw", num_tasks=0)
