"""COSMOS against r·L - λ cos(r, L) written out, differentiated by autograd."""

import functools

import numpy as np
import pytest
import torch

from mtlkit.errors import ConfigError, GradientError
from mtlkit.testing.pytest_plugin import aggregator_suite
from tests.aggregators.helpers import agg
from tests.aggregators.scalarizer_refs import (
    autograd_weights,
    chain_rule_gap,
    random_losses,
    weight_tol,
)


def cosmos(L, lam, r):
    # the official code's objective: Σ r_k L_k - λ cosine_similarity(L, r)
    return (r * L).sum() - lam * torch.nn.functional.cosine_similarity(L, r, dim=0)


test_cosmos_properties = aggregator_suite(lambda: agg("cosmos"), max_examples=10,
                                          max_tasks=12, max_dim=300)


@pytest.mark.parametrize("K,seed,lam", [(2, 0, 2.0), (3, 1, 0.01), (6, 2, 8.0), (10, 3, 2.0)])
def test_cosmos_weights_are_the_gradient_of_the_cosmos_objective(K, seed, lam):
    L = random_losses(K, seed)
    g = torch.Generator().manual_seed(90 + seed)
    r = torch.rand(K, generator=g, dtype=torch.float64) + 0.05
    r = r / r.sum()
    w = agg("cosmos", lam=lam, preference=r.tolist()).loss_weights(L, {})
    ref = autograd_weights(functools.partial(cosmos, lam=lam, r=r), L)
    # the cosine's gradient carries λ/(‖r‖ ‖L‖)
    cond = 1 + lam / float(r.norm() * L.norm())
    assert float((w - ref).abs().max()) <= weight_tol(ref, K, cond)
    # defaults: λ = 2 (official code), uniform preference 1/K
    u = torch.full((K,), 1.0 / K, dtype=torch.float64)
    ref0 = autograd_weights(functools.partial(cosmos, lam=2.0, r=u), L)
    w0 = agg("cosmos").loss_weights(L, {})
    assert float((w0 - ref0).abs().max()) <= weight_tol(ref0, K, 1 + 2 / float(u.norm() * L.norm()))


def test_cosmos_penalty_is_orthogonal_to_the_losses():
    # why the penalty only turns the loss vector: (w - r) ⊥ L
    L = random_losses(5, 7)
    w = agg("cosmos", lam=3.0).loss_weights(L, {})
    r = torch.full((5,), 0.2, dtype=torch.float64)
    assert abs(float((w - r) @ L)) <= 64 * 5 * 2.0**-52 * float(L.norm()) * 3.0 / float(r.norm())


def test_cosmos_direction_is_the_gradient_of_the_scalarised_objective():
    S = functools.partial(cosmos, lam=2.0, r=torch.full((3,), 1 / 3, dtype=torch.float64))
    # float64 round-off on a 3 x 6 toy problem with O(1) entries: ~K·n·eps ≈ 1e-14
    assert chain_rule_gap(agg("cosmos"), S, K=3) <= 1e-12


def test_cosmos_sampled_preference_is_a_seeded_dirichlet_draw():
    a = agg("cosmos", alpha=1.2)
    L = random_losses(3, 0)
    gen = torch.Generator().manual_seed(5)
    w = a.loss_weights(L, {"generator": gen})
    # the same draw, made independently
    seed = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(5)))
    r = torch.as_tensor(np.random.default_rng(seed).dirichlet([1.2] * 3))
    ref = autograd_weights(functools.partial(cosmos, lam=2.0, r=r), L)
    assert float((w - ref).abs().max()) <= weight_tol(ref, 3, 1 + 2 / float(r.norm() * L.norm()))
    # its own generator (no trainer generator) is seeded and reset
    a.reset()
    first = a.loss_weights(L, {})
    assert not torch.allclose(first, a.loss_weights(L, {}))
    a.reset()
    assert torch.equal(first, a.loss_weights(L, {}))


@pytest.mark.parametrize("params,match", [
    ({"lam": -1.0}, "lam=-1.0"), ({"alpha": 0.0}, "alpha=0.0"),
    ({"alpha": 1.0, "preference": [0.5, 0.5]}, "not both"),
    ({"preference": [0.2, -0.1]}, "negative")])
def test_cosmos_rejects_bad_parameters(params, match):
    with pytest.raises(ConfigError, match=match):
        agg("cosmos", **params)


def test_cosmos_bad_losses_and_task_count():
    with pytest.raises(GradientError, match="L = 0"):
        agg("cosmos").loss_weights(torch.zeros(2), {})
    with pytest.raises(ConfigError, match="2 entries but there are 4 tasks"):
        agg("cosmos", preference=[1, 1]).configure(4)
