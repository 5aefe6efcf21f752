import pytest
import torch

from mtlkit.errors import ConfigError
from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import roundoff


def graddrop_loop(J, U, leak):
    """Independent reference: coordinate by coordinate, as the paper describes."""
    K, n = J.shape
    d = torch.zeros(n, dtype=J.dtype)
    for x in range(n):
        col = J[:, x]
        denom = col.abs().sum()
        P = 0.5 * (1 + col.sum() / denom) if denom > 0 else 0.5
        for k in range(K):
            keep = (U[x] < P and col[k] > 0) or (U[x] > P and col[k] < 0)
            d[x] += (leak + (1 - leak) * float(keep)) * col[k]
    return d


@pytest.mark.parametrize("leak", [0.0, 0.3])
def test_graddrop_matches_coordinate_loop(leak):
    J = make_J(4, 25, seed=1)
    J[:, 3] = 0.0
    d = agg("graddrop", leak=leak)(J, generator=torch.Generator().manual_seed(9))
    U = torch.rand(25, generator=torch.Generator().manual_seed(9), dtype=J.dtype)
    assert float((d - graddrop_loop(J, U, leak)).norm()) <= roundoff(J)


def test_leak_one_is_the_sum():
    J = make_J(3, 10)
    assert torch.allclose(agg("graddrop", leak=1.0)(J), J.sum(0))


def test_bad_leak():
    with pytest.raises(ConfigError, match="leak"):
        agg("graddrop", leak=2.0)
