"""References for the loss-level scalarisers: the scalariser written out as a torch function
of the losses, differentiated by autograd (independently of the closed-form weights the
aggregators implement), and a toy model on which one backward of ``Σ w_k L_k`` must equal
``∇_θ S(L(θ))``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mtlkit.testing.properties import make_context

EPS64 = float(torch.finfo(torch.float64).eps)

Scalariser = Callable[[torch.Tensor], torch.Tensor]


def random_losses(K: int, seed: int, lo: float = 0.05, hi: float = 5.0) -> torch.Tensor:
    """Positive float64 losses spread over two decades (log-uniform in [lo, hi])."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(K, generator=g, dtype=torch.float64)
    return torch.exp(torch.log(torch.tensor(lo)) + u * (torch.log(torch.tensor(hi / lo))))


def autograd_weights(S: Scalariser, L: torch.Tensor) -> torch.Tensor:
    """``∇_L S`` at ``L`` by autograd."""
    x = L.detach().clone().double().requires_grad_(True)
    (grad,) = torch.autograd.grad(S(x), x)
    return grad


def weight_tol(w_ref: torch.Tensor, K: int, cond: float = 1.0) -> float:
    """Two float64 evaluations of the same smooth K-term formula differ by round-off:
    O(K) operations of relative error eps each, times the conditioning ``cond`` of the formula
    (e.g. ``θ/d_2`` for PBI, ``1/‖L‖`` for COSMOS), relative to the largest weight."""
    return 64 * K * EPS64 * cond * max(float(w_ref.abs().max()), 1.0)


def toy_problem(K: int, n: int, seed: int) -> tuple[torch.Tensor, Callable[[torch.Tensor],
                                                                            torch.Tensor]]:
    """θ and ``L(θ)``: K least-squares losses ``L_k = ½‖A_k θ - b_k‖² + 0.1`` (positive)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(K, 3, n, generator=g, dtype=torch.float64)
    b = torch.randn(K, 3, generator=g, dtype=torch.float64)
    theta = torch.randn(n, generator=g, dtype=torch.float64)

    def losses(t: torch.Tensor) -> torch.Tensor:
        r = torch.einsum("kmn,n->km", A, t) - b
        return 0.5 * (r**2).sum(dim=1) + 0.1

    return theta, losses


def chain_rule_gap(agg: object, S: Scalariser, K: int, n: int = 6, seed: int = 0) -> float:
    """``‖agg(J, losses=L) - ∇_θ S(L(θ))‖ / max(1, ‖∇_θ S‖)`` on the toy problem: the
    aggregator's direction against the gradient of the scalarised objective."""
    theta, losses = toy_problem(K, n, seed)
    J = torch.autograd.functional.jacobian(losses, theta)
    L = losses(theta).detach()
    t = theta.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(S(losses(t)), t)
    d = agg(J, **make_context(K, losses=L))
    return float((d - ref).norm()) / max(1.0, float(ref.norm()))
