"""STCH against the smooth Tchebycheff function (paper form and the multi-task form of the
official code), differentiated by autograd."""

import functools

import pytest
import torch
from mtlkit_plugins.aggregators.stch import STCH

from mtlkit.errors import ConfigError, GradientError
from mtlkit.testing.pytest_plugin import aggregator_suite
from tests.aggregators.helpers import agg
from tests.aggregators.scalarizer_refs import (
    autograd_weights,
    chain_rule_gap,
    random_losses,
    weight_tol,
)


def smooth_tchebycheff(L, mu, lam, z):
    # Eq. 7 written directly (no max-shift): fine for the moderate arguments used here
    return mu * torch.log(torch.exp(lam * (L - z) / mu).sum())


def stch_mtl(L, mu, nadir):
    # the official STCH_MTL objective after warm-up: K μ log Σ exp(log(L/ν)/μ)
    return L.numel() * mu * torch.log(torch.exp(torch.log(L / nadir) / mu).sum())


test_stch_properties = aggregator_suite(lambda: agg("stch"), max_examples=10, max_tasks=12,
                                        max_dim=300)
test_stch_mtl_properties = aggregator_suite(
    functools.partial(STCH, variant="mtl"), max_examples=6, max_tasks=12, max_dim=300)


@pytest.mark.parametrize("K,seed,mu", [(2, 0, 1.0), (3, 1, 0.1), (6, 2, 0.5), (10, 3, 2.0)])
def test_stch_weights_are_the_gradient_of_the_smooth_tchebycheff_function(K, seed, mu):
    L = random_losses(K, seed)
    g = torch.Generator().manual_seed(50 + seed)
    lam = torch.rand(K, generator=g, dtype=torch.float64) + 0.05
    lam = lam / lam.sum()
    z = 0.01 * torch.rand(K, generator=g, dtype=torch.float64)
    a = agg("stch", mu=mu, preference=lam.tolist(), reference=z.tolist())
    w = a.loss_weights(L, {})
    ref = autograd_weights(lambda x: smooth_tchebycheff(x, mu, lam, z), L)
    assert float((w - ref).abs().max()) <= weight_tol(ref, K)
    # defaults: uniform preference 1/K, zero reference, μ = 1 (LibMTL's --STCH_mu)
    w0 = agg("stch").loss_weights(L, {})
    uniform = torch.full((K,), 1.0 / K, dtype=torch.float64)
    ref0 = autograd_weights(lambda x: smooth_tchebycheff(x, 1.0, uniform, 0.0), L)
    assert float((w0 - ref0).abs().max()) <= weight_tol(ref0, K)


def test_stch_tends_to_tchebycheff_as_mu_shrinks():
    # μ → 0: all weight on argmax_k λ_k (L_k - z_k), the Tchebycheff subgradient
    L = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64)
    w = agg("stch", mu=1e-3).loss_weights(L, {})
    assert torch.allclose(w, torch.tensor([0.0, 1 / 3, 0.0], dtype=torch.float64), atol=1e-12)
    # no overflow at tiny μ with large losses (the max-shifted softmax)
    w = agg("stch", mu=1e-6).loss_weights(torch.tensor([1e4, 2e4]), {})
    assert torch.isfinite(w).all() and float(w[1]) == 0.5


def test_stch_direction_is_the_gradient_of_the_scalarised_objective():
    uniform = torch.full((3,), 1 / 3, dtype=torch.float64)
    S = functools.partial(smooth_tchebycheff, mu=0.3, lam=uniform, z=0.0)
    # float64 round-off on a 3 x 6 toy problem with O(1) entries: ~K·n·eps ≈ 1e-14
    assert chain_rule_gap(agg("stch", mu=0.3), S, K=3) <= 1e-12


def test_stch_mtl_variant_follows_warmup_nadir_and_objective():
    a = agg("stch", variant="mtl", warmup_epochs=1, mu=0.5)
    L0, L1a, L1b, L2 = (torch.tensor(v, dtype=torch.float64) for v in
                        ([2.0, 4.0], [1.0, 3.0], [3.0, 1.0], [0.5, 1.5]))
    # warm-up epochs: gradient of Σ log L_k
    assert torch.allclose(a.loss_weights(L0, {"epoch": 0}), 1 / L0)
    assert torch.allclose(a.loss_weights(L1a, {"epoch": 1}), 1 / L1a)
    assert torch.allclose(a.loss_weights(L1b, {"epoch": 1}), 1 / L1b)
    # after: nadir = mean of epoch 1 only (the reference code's average), objective stch_mtl
    nadir = (L1a + L1b) / 2
    w = a.loss_weights(L2, {"epoch": 2})
    ref = autograd_weights(lambda x: stch_mtl(x, 0.5, nadir), L2)
    assert float((w - ref).abs().max()) <= weight_tol(ref, 2)
    assert torch.allclose(a._nadir, nadir)
    a.reset()
    assert a._nadir is None and a._sum is None


def test_stch_mtl_started_past_the_warmup_takes_its_first_losses_as_nadir():
    a = agg("stch", variant="mtl", warmup_epochs=0)
    L = torch.tensor([0.3, 2.0], dtype=torch.float64)
    w = a.loss_weights(L, {"epoch": 5})
    ref = autograd_weights(lambda x: stch_mtl(x, 1.0, L.clone()), L)
    assert float((w - ref).abs().max()) <= weight_tol(ref, 2)


@pytest.mark.parametrize("params,match", [
    ({"mu": 0.0}, "mu=0.0"), ({"mu": -1.0}, "mu=-1.0"), ({"variant": "max"}, "variant"),
    ({"preference": [0.5, -0.5]}, "negative"), ({"preference": [0.0, 0.0]}, "all entries"),
    ({"preference": "0.5,0.5"}, "preference"), ({"warmup_epochs": -1}, "warmup_epochs"),
    ({"variant": "mtl", "preference": [1, 1]}, "no preference")])
def test_stch_rejects_bad_parameters(params, match):
    with pytest.raises(ConfigError, match=match):
        agg("stch", **params)


def test_stch_bad_losses_and_task_count():
    with pytest.raises(ConfigError, match="2 entries but there are 3 tasks"):
        agg("stch", preference=[0.5, 0.5]).loss_weights(torch.ones(3), {})
    with pytest.raises(ConfigError, match="2 entries but there are 3 tasks"):
        agg("stch", reference=[0.0, 0.0]).configure(3)
    with pytest.raises(GradientError, match="positive"):
        agg("stch", variant="mtl").loss_weights(torch.tensor([0.0, 1.0]), {})
