import pytest
import torch

from mtlkit.errors import ConfigError
from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import roundoff


def pcgrad_loop(J: torch.Tensor, gen: torch.Generator, reduction: str) -> torch.Tensor:
    """Straightforward implementation on the n-vectors (the paper's Alg. 1), drawing the same
    random orders (one randperm of the other tasks per task) as the library."""
    K = J.shape[0]
    out = []
    for i in range(K):
        g = J[i].clone()
        others = [j for j in range(K) if j != i]
        for t in torch.randperm(K - 1, generator=gen).tolist():
            j = others[t]
            dot = g @ J[j]
            if dot < 0:
                g = g - dot / (J[j] @ J[j]) * J[j]
        out.append(g)
    total = torch.stack(out).sum(0)
    return total / K if reduction == "mean" else total


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize(("K", "n"), [(2, 5), (3, 8), (6, 20), (12, 7)])
def test_pcgrad_matches_loop_implementation(K, n, reduction):
    J = make_J(K, n, seed=K * n)
    d = agg("pcgrad", reduction=reduction)(J, generator=torch.Generator().manual_seed(7))
    ref = pcgrad_loop(J, torch.Generator().manual_seed(7), reduction)
    # the same K(K-1) projections in another order of floating-point operations; each divides
    # by ‖g_j‖², so round-off is bounded by the rows' norm ratio per projection
    norms = J.norm(dim=1)
    ratio = float(norms.max() / norms.min())
    assert float((d - ref).norm()) <= roundoff(J, cond=K * ratio)


def test_pcgrad_two_tasks_removes_the_conflict_both_ways():
    J = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    d = agg("pcgrad")(J)
    # g1 -> g1 - (-1/2) g2 = (0.5, 0.5); g2 -> g2 - (-1) g1 = (0, 1)
    assert torch.allclose(d, torch.tensor([0.5, 1.5], dtype=torch.float64))


def test_bad_reduction():
    with pytest.raises(ConfigError, match="reduction"):
        agg("pcgrad", reduction="max")
