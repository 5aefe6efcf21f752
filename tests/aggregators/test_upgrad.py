import math

import numpy as np
import pytest
import torch
from mtlkit_plugins.aggregators import _solvers
from mtlkit_plugins.aggregators.upgrad import UPGrad

from tests.aggregators.helpers import agg, has_conflict, make_J
from tests.aggregators.references import dual_cone_projection, gramian_cond, roundoff


def upgrad_reference(J: torch.Tensor) -> tuple[np.ndarray, float]:
    """Independent reference: project every g_k onto {x : J x >= 0} in R^n (certified), then
    average; returns the mean and a bound on its distance to the exact mean."""
    A = J.double().numpy()
    out = [dual_cone_projection(J, g) for g in A]
    return np.mean([x for x, _ in out], axis=0), max(radius for _, radius in out)


@pytest.mark.parametrize(("K", "n"), [(2, 4), (3, 6), (5, 12), (8, 5)])
def test_upgrad_matches_cvxpy_dual_cone_projection(K, n):
    J = make_J(K, n, seed=K * 3)
    assert has_conflict(J)
    d = agg("upgrad")(J).numpy()
    ref, radius = upgrad_reference(J)
    # Ours solves each projection's QP exactly, on G/s + RIDGE·I: the ridge raises the optimal
    # value ‖π(g_k)‖² by at most s·RIDGE·‖w^(k)‖², and the projection is a min-norm point of a
    # convex set (2-strongly convex), so π moves by at most sqrt(s·RIDGE)·‖w^(k)‖ with
    # ‖w^(k)‖ <= ‖w^(k)‖₁ <= K·‖w̄‖₁ (w̄ = mean of the w^(k) >= 0, UPGrad's weights).
    s = float((J * J).sum(1).mean())
    w_bar = UPGrad().weights(J @ J.T, {})
    ours = math.sqrt(s * _solvers.RIDGE) * K * float(w_bar.abs().sum())
    tol = radius + ours + roundoff(J, cond=gramian_cond(J))
    assert np.linalg.norm(d - ref) <= tol
