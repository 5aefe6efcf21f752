"""GLS against the geometric mean of the losses, differentiated by autograd."""

import pytest
import torch

from mtlkit.errors import GradientError
from mtlkit.testing.pytest_plugin import aggregator_suite
from tests.aggregators.helpers import agg
from tests.aggregators.scalarizer_refs import (
    autograd_weights,
    chain_rule_gap,
    random_losses,
    weight_tol,
)


def geometric_mean(L: torch.Tensor) -> torch.Tensor:
    # the paper's form, a product and a K-th root (not the log-space form of the module)
    return torch.prod(L) ** (1.0 / L.numel())


test_gls_properties = aggregator_suite(lambda: agg("gls"), max_examples=10, max_tasks=12,
                                       max_dim=300)


@pytest.mark.parametrize("K,seed", [(2, 0), (3, 1), (5, 2), (10, 3)])
def test_gls_weights_are_the_gradient_of_the_geometric_mean(K, seed):
    L = random_losses(K, seed)
    w = agg("gls").loss_weights(L, {})
    ref = autograd_weights(geometric_mean, L)
    assert float((w - ref).abs().max()) <= weight_tol(ref, K)
    # why GLS balances units: w_k L_k = S/K for every task, whatever the loss scales
    assert torch.allclose(w * L, torch.full((K,), float(geometric_mean(L)) / K, dtype=L.dtype))


def test_gls_direction_is_the_gradient_of_the_scalarised_objective():
    # float64 round-off on a 3 x 6 toy problem with O(1) entries: ~K·n·eps ≈ 1e-14
    assert chain_rule_gap(agg("gls"), geometric_mean, K=3) <= 1e-12


@pytest.mark.parametrize("bad", [[0.0, 1.0], [-0.5, 2.0]])
def test_gls_refuses_non_positive_losses(bad):
    with pytest.raises(GradientError, match="positive"):
        agg("gls").loss_weights(torch.tensor(bad), {})
