import pytest
import torch

from mtlkit.errors import GradientError
from tests.aggregators.helpers import agg


def test_famo_weights_are_the_gradient_of_the_log_loss_objective():
    a = agg("famo")
    L = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    w = a.loss_weights(L, {})
    Lr = L.clone().requires_grad_(True)
    z = torch.full((3,), 1 / 3, dtype=torch.float64)
    (z * torch.log(Lr + 1e-8)).sum().backward()
    assert torch.allclose(w, Lr.grad / Lr.grad.sum())


def test_famo_logit_update_matches_reference_adam_step():
    a = agg("famo", lr=0.1, gamma=0.01)
    before = torch.tensor([1.0, 2.0], dtype=torch.float64)
    after = torch.tensor([0.5, 1.9], dtype=torch.float64)
    ctx = {}
    a.loss_weights(before, ctx)
    ctx["losses_after"] = after
    a.after_step(ctx)
    # reference: ξ = 0, δ = log L - log L', grad = J_softmax^T δ, one Adam step
    xi = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([xi], lr=0.1, weight_decay=0.01)
    delta = torch.log(before + 1e-8) - torch.log(after + 1e-8)
    xi.grad = torch.autograd.grad(torch.softmax(xi, 0), xi, grad_outputs=delta)[0]
    opt.step()
    w = a.loss_weights(torch.tensor([1.0, 1.0], dtype=torch.float64), {})
    assert torch.allclose(w, torch.softmax(xi.detach(), 0))
    assert float(w[0]) < float(w[1])  # task 0 improved faster: it loses weight


def test_famo_deferred_update_uses_next_losses_when_trainer_gives_none():
    a, b = agg("famo"), agg("famo")
    L1, L2 = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 1.9])
    a.loss_weights(L1, {})
    a.after_step({})  # no losses_after: deferred
    wa = a.loss_weights(L2, {})
    b.loss_weights(L1, {})
    b.after_step({"losses_after": L2})
    wb = b.loss_weights(L2, {})
    assert torch.allclose(wa, wb)


def test_famo_rejects_losses_below_min_loss():
    with pytest.raises(GradientError, match="min_loss"):
        agg("famo").loss_weights(torch.tensor([-1.0, 1.0]), {})
