import math

import numpy as np
import pytest
import torch
from mtlkit_plugins.aggregators import _solvers
from mtlkit_plugins.aggregators.dualproj import DualProj

from mtlkit.testing.pytest_plugin import aggregator_suite
from tests.aggregators.helpers import agg, has_conflict, make_J
from tests.aggregators.references import dual_cone_projection, gramian_cond, roundoff

test_dualproj_properties = aggregator_suite(DualProj, max_examples=8, max_tasks=20,
                                            max_dim=500)


@pytest.mark.parametrize(("K", "n", "seed"), [(2, 4, 0), (3, 6, 1), (5, 12, 2), (8, 5, 3),
                                              (12, 30, 4)])
def test_dualproj_is_the_projection_of_the_mean_onto_the_dual_cone(K, n, seed):
    J = make_J(K, n, seed=seed)
    assert has_conflict(J)
    a = agg("dualproj")
    d = a(J).double().numpy()
    # independent reference: the projection in R^n itself (cvxpy + Clarabel, certified)
    ref, radius = dual_cone_projection(J, J.double().mean(0).numpy())
    # the implementation solves the weight QP with a ridge r on the Gramian normalised by s:
    # its point d_r = J^T w_r is feasible, so ‖d_r - d*‖² <= ‖d_r‖² - ‖d*‖² <= r·s·‖w_r‖²
    # (projection onto a convex set; f = ‖·‖² is 2-strongly convex in d)
    w = a.weights(J @ J.T, {}).numpy()
    s = float((J.double() ** 2).sum(1).mean())
    ridge = math.sqrt(_solvers.RIDGE * s) * float(np.linalg.norm(w))
    tol = ridge + radius + roundoff(J, gramian_cond(J))
    assert np.linalg.norm(d - ref) <= tol
    # and it is a descent direction for every task (non-conflicting)
    assert (J.double().numpy() @ d >= -tol * J.double().norm(dim=1).numpy()).all()


def test_dualproj_keeps_the_mean_when_it_conflicts_with_no_task():
    J = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-0.2, 0.1, 1.0]], dtype=torch.float64)
    assert has_conflict(J) and bool((J @ J.mean(0) >= 0).all())
    assert torch.equal(agg("dualproj").weights(J @ J.T, {}),
                       torch.full((3,), 1 / 3, dtype=torch.float64))


def test_two_opposite_tasks_give_a_zero_step():
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    d = agg("dualproj")(torch.stack([g, -g]))
    assert float(d.norm()) <= 1e-12 * float(g.norm())


def test_dualproj_takes_no_parameters():
    with pytest.raises(Exception, match="no parameter 'pref_vector'"):
        agg("dualproj", pref_vector=[0.5, 0.5])
