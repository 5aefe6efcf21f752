"""GO4Align against the official update written out, with the K-means step checked against a
brute-force search over every assignment of tasks to groups (no contiguity assumed)."""

import itertools

import numpy as np
import pytest
import torch
from mtlkit_plugins.aggregators.go4align import kmeans_1d

from mtlkit.errors import ConfigError, GradientError
from mtlkit.testing.pytest_plugin import aggregator_suite
from tests.aggregators.helpers import agg
from tests.aggregators.scalarizer_refs import random_losses

test_go4align_properties = aggregator_suite(lambda: agg("go4align"), max_examples=8,
                                            max_tasks=12, max_dim=300)


def brute_force_centres(x: np.ndarray, G: int) -> tuple[np.ndarray, float]:
    """Each value's centre under the assignment (G non-empty groups) of least within-group sum
    of squares, and that least sum; every one of the G^K labelings is tried."""
    best, best_cost = None, np.inf
    for labels in itertools.product(range(G), repeat=x.size):
        lab = np.array(labels)
        if len(set(labels)) < G:
            continue
        cost = sum(((x[lab == g] - x[lab == g].mean()) ** 2).sum() for g in range(G))
        if cost < best_cost:
            best, best_cost = lab, cost
    centres = np.array([x[best == best[k]].mean() for k in range(x.size)])
    return centres, best_cost


def sse(x, centres):
    return float(((x - centres) ** 2).sum())


@pytest.mark.parametrize("K,G,seed", [(3, 2, 0), (5, 2, 1), (6, 3, 2), (7, 3, 3), (4, 4, 4)])
def test_exact_1d_kmeans_matches_brute_force(K, G, seed):
    x = np.random.default_rng(seed).lognormal(size=K)
    got = kmeans_1d(x, G)
    ref, cost = brute_force_centres(x, G)
    # the optimum's cost is unique; with distinct random values so is the partition
    assert abs(sse(x, got) - cost) <= 64 * K * np.finfo(float).eps * float((x**2).sum())
    assert np.allclose(got, ref, rtol=1e-12, atol=0)


def test_go4align_follows_the_official_update_over_steps():
    eta, G, K = 0.3, 2, 5  # a large step so the risk history matters within 3 steps
    a = agg("go4align", num_groups=G, step_size=eta)
    p = np.full(K, 1 / K)
    for step in range(3):
        L = random_losses(K, 20 + step).numpy()
        w = a.loss_weights(torch.as_tensor(L), {})
        # official: p ← p·exp(-ηL)/Σ, γ = (ΣL/L)·p, weights = K-means centres of γ
        p = p * np.exp(-eta * L)
        p = p / p.sum()
        gamma = L.sum() / L * p
        ref, _ = brute_force_centres(gamma, G)
        assert np.allclose(w.numpy(), ref, rtol=1e-12, atol=0), step
    assert np.allclose(a._probs.numpy(), p, rtol=1e-12)
    a.reset()
    assert a._probs is None


def test_go4align_one_group_is_the_mean_and_k_groups_the_indicators():
    L = torch.tensor([0.5, 1.0, 4.0], dtype=torch.float64)
    gamma = (L.sum() / L) / 3  # first step from uniform p, step_size 0
    w1 = agg("go4align", num_groups=1, step_size=0.0).loss_weights(L, {})
    assert torch.allclose(w1, torch.full((3,), float(gamma.mean()), dtype=torch.float64))
    w3 = agg("go4align", num_groups=3, step_size=0.0).loss_weights(L, {})
    assert torch.allclose(w3, gamma)


def test_go4align_large_losses_do_not_underflow_the_probabilities():
    w = agg("go4align", step_size=1.0).loss_weights(torch.tensor([800.0, 900.0, 1000.0]), {})
    assert torch.isfinite(w).all() and float(w.min()) >= 0


@pytest.mark.parametrize("params,match", [({"num_groups": 0}, "num_groups=0"),
                                          ({"num_groups": 2.5}, "num_groups"),
                                          ({"step_size": -1.0}, "step_size")])
def test_go4align_rejects_bad_parameters(params, match):
    with pytest.raises(ConfigError, match=match):
        agg("go4align", **params)


def test_go4align_bad_task_count_and_losses():
    with pytest.raises(ConfigError, match="num_groups=4 exceeds the 3 tasks"):
        agg("go4align", num_groups=4).configure(3)
    with pytest.raises(GradientError, match="positive"):
        agg("go4align").loss_weights(torch.tensor([0.0, 1.0]), {})
