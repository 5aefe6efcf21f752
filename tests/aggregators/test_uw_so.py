"""UW-SO / UW-O against their closed forms written independently."""

import math

import pytest
import torch

from mtlkit.errors import ConfigError, GradientError
from mtlkit.testing.pytest_plugin import aggregator_suite
from tests.aggregators.helpers import agg
from tests.aggregators.scalarizer_refs import chain_rule_gap, random_losses, weight_tol

test_uw_so_properties = aggregator_suite(lambda: agg("uw_so"), max_examples=10, max_tasks=12,
                                         max_dim=300)


@pytest.mark.parametrize("K,seed,T", [(2, 0, 1.0), (3, 1, 0.5), (6, 2, 5.0), (10, 3, 20.0)])
def test_uw_so_is_the_softmax_of_inverse_losses(K, seed, T):
    L = random_losses(K, seed, lo=0.2)
    w = agg("uw_so", temperature=T).loss_weights(L, {})
    # the paper's formula, term by term in math.exp (no shift, moderate arguments here)
    e = [math.exp(1.0 / (T * float(x))) for x in L]
    ref = torch.tensor([v / sum(e) for v in e], dtype=torch.float64)
    assert float((w - ref).abs().max()) <= weight_tol(ref, K)
    assert abs(float(w.sum()) - 1.0) <= 4 * K * 2.0**-52


def test_uw_o_is_the_inverse_loss_and_limits_of_the_temperature():
    L = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64)
    assert torch.equal(agg("uw_so", temperature=None).loss_weights(L, {}), 1.0 / L)
    hot = agg("uw_so", temperature=1e9).loss_weights(L, {})
    assert torch.allclose(hot, torch.full((3,), 1 / 3, dtype=torch.float64), atol=1e-8)
    # T → 0: all weight on the smallest loss, without overflow
    cold = agg("uw_so", temperature=1e-6).loss_weights(torch.tensor([1e-3, 1e-2]), {})
    assert cold.tolist() == [1.0, 0.0]


def test_uw_so_direction_is_the_weighted_gradient_with_detached_weights():
    # the weights are constants: d = Σ_k w_k(L) ∇L_k, i.e. the gradient of Σ_k c_k L_k with
    # c = w(L) frozen; float64 round-off on a 3 x 6 toy problem is ~1e-14
    def frozen(Lt):
        return (torch.softmax(1.0 / Lt.detach(), 0) * Lt).sum()
    assert chain_rule_gap(agg("uw_so"), frozen, K=3) <= 1e-12


@pytest.mark.parametrize("T", [0.0, -1.0, float("inf")])
def test_uw_so_rejects_bad_temperature(T):
    with pytest.raises(ConfigError, match="temperature"):
        agg("uw_so", temperature=T)


def test_uw_so_refuses_non_positive_losses():
    with pytest.raises(GradientError, match="positive"):
        agg("uw_so").loss_weights(torch.tensor([0.0, 1.0]), {})
