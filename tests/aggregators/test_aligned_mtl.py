import math

import pytest
import torch

from mtlkit.errors import ConfigError
from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import gramian_cond, roundoff


@pytest.mark.parametrize(("K", "n"), [(2, 6), (4, 9), (7, 5)])
def test_aligned_mtl_matches_svd_reference(K, n):
    """Independent reference: with J = U Σ V^T (rank r), the aligned system is σ_min U V^T and
    d is its row mean."""
    J = make_J(K, n, seed=K)
    U, S, Vh = torch.linalg.svd(J, full_matrices=False)
    keep = S.max() * 1e-10 < S
    U, S, Vh = U[:, keep], S[keep], Vh[keep]
    aligned = S.min() * U @ Vh
    d = agg("aligned_mtl")(J)
    # ours goes through eigh(J J^T), whose round-off is amplified by the Gramian's condition
    tol = roundoff(J, cond=gramian_cond(J))
    assert float((d - aligned.mean(0)).norm()) <= tol
    if n >= K:
        # K orthogonal aligned rows of norm σ_min: their mean has norm σ_min / √K
        assert abs(float(d.norm()) - float(S.min()) / math.sqrt(K)) <= tol


def test_bad_scale_mode():
    with pytest.raises(ConfigError, match="scale_mode"):
        agg("aligned_mtl", scale_mode="max")
