import pytest
import torch

from mtlkit.errors import ConfigError
from tests.aggregators.helpers import agg, make_J


@pytest.mark.parametrize(("K", "n"), [(2, 6), (4, 9), (7, 5)])
def test_aligned_mtl_matches_svd_reference(K, n):
    """Independent reference: with J = U Σ V^T (rank r), the aligned system is σ_min U V^T and
    d is its row mean."""
    J = make_J(K, n, seed=K)
    U, S, Vh = torch.linalg.svd(J, full_matrices=False)
    keep = S.max() * 1e-10 < S
    U, S, Vh = U[:, keep], S[keep], Vh[keep]
    aligned = S.min() * U @ Vh
    assert torch.allclose(agg("aligned_mtl")(J), aligned.mean(0), atol=1e-9)
    rows = aligned @ aligned.T  # orthogonal, equal norms (when K <= n)
    if n >= K:
        assert torch.allclose(rows, S.min() ** 2 * torch.eye(K, dtype=J.dtype), atol=1e-8)


def test_bad_scale_mode():
    with pytest.raises(ConfigError, match="scale_mode"):
        agg("aligned_mtl", scale_mode="max")
