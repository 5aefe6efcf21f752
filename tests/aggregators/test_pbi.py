"""PBI against d_1 + θ d_2 written out, differentiated by autograd."""

import functools

import pytest
import torch

from mtlkit.errors import ConfigError
from mtlkit.testing.pytest_plugin import aggregator_suite
from tests.aggregators.helpers import agg
from tests.aggregators.scalarizer_refs import (
    autograd_weights,
    chain_rule_gap,
    random_losses,
    weight_tol,
)


def pbi(L, theta, lam, z):
    # MOEA/D's definition: d_1 = (L - z)·λ/‖λ‖, d_2 = ‖L - (z + d_1 λ/‖λ‖)‖
    u = lam / lam.norm()
    d1 = ((L - z) * u).sum()
    d2 = (L - (z + d1 * u)).norm()
    return d1 + theta * d2


test_pbi_properties = aggregator_suite(lambda: agg("pbi"), max_examples=10, max_tasks=12,
                                       max_dim=300)


@pytest.mark.parametrize("K,seed,theta", [(2, 0, 5.0), (3, 1, 0.5), (6, 2, 5.0), (10, 3, 20.0)])
def test_pbi_weights_are_the_gradient_of_the_pbi_function(K, seed, theta):
    L = random_losses(K, seed)
    g = torch.Generator().manual_seed(70 + seed)
    lam = torch.rand(K, generator=g, dtype=torch.float64) + 0.05
    z = 0.01 * torch.rand(K, generator=g, dtype=torch.float64)
    S = functools.partial(pbi, theta=theta, lam=lam, z=z)
    w = agg("pbi", theta=theta, preference=lam.tolist(), reference=z.tolist()).loss_weights(L, {})
    ref = autograd_weights(S, L)
    d2 = float((L - z - ((L - z) @ lam / lam.norm()) * lam / lam.norm()).norm())
    # the θ r_⊥/d_2 term amplifies round-off in r_⊥ by θ‖r‖/d_2
    cond = 1 + theta * float((L - z).norm()) / d2
    assert float((w - ref).abs().max()) <= weight_tol(ref, K, cond)
    # defaults: θ = 5 (the paper's experiments), uniform preference, origin reference
    ones = torch.ones(K, dtype=torch.float64)
    ref0 = autograd_weights(functools.partial(pbi, theta=5.0, lam=ones, z=0.0), L)
    w0 = agg("pbi").loss_weights(L, {})
    d2_0 = float((L - L.mean()).norm())
    assert float((w0 - ref0).abs().max()) <= weight_tol(ref0, K, 1 + 5 * float(L.norm()) / d2_0)


def test_pbi_on_the_preference_ray_uses_the_direction_alone():
    # d_2 = 0 is not differentiable; ŵ is the minimum-norm subgradient there
    lam = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64)
    L = 0.7 * lam
    w = agg("pbi", preference=lam.tolist()).loss_weights(L, {})
    assert torch.allclose(w, lam / 3.0, rtol=0, atol=1e-15)


def test_pbi_penalty_pulls_back_the_task_ahead_of_its_share():
    # L_0 above the ray: its weight grows, the other's turns negative (θ = 5 > 1)
    w = agg("pbi").loss_weights(torch.tensor([2.0, 1.0]), {})
    s = 2**-0.5
    assert torch.allclose(w, torch.tensor([s + 5 * s, s - 5 * s], dtype=torch.float64))


def test_pbi_direction_is_the_gradient_of_the_scalarised_objective():
    S = functools.partial(pbi, theta=5.0, lam=torch.ones(3, dtype=torch.float64), z=0.0)
    # float64 round-off on a 3 x 6 toy problem with O(1) entries (~1e-14) times θ‖r‖/d_2
    assert chain_rule_gap(agg("pbi"), S, K=3) <= 1e-11


@pytest.mark.parametrize("params,match", [
    ({"theta": -1.0}, "theta=-1.0"), ({"preference": [1.0, -1.0]}, "negative"),
    ({"reference": [0.0, float("nan")]}, "finite"), ({"preference": []}, "non-empty")])
def test_pbi_rejects_bad_parameters(params, match):
    with pytest.raises(ConfigError, match=match):
        agg("pbi", **params)


def test_pbi_preference_must_match_the_task_count():
    with pytest.raises(ConfigError, match="3 entries but there are 2 tasks"):
        agg("pbi", preference=[1, 1, 1]).configure(2)
