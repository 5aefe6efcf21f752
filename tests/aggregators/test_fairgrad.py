import numpy as np
import pytest
import torch

from mtlkit.errors import ConfigError
from tests.aggregators.helpers import agg, make_J


def weights_of(J, d):
    return torch.linalg.lstsq(J.T, d[:, None]).solution.flatten()


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_fairgrad_solves_its_optimality_condition_on_the_true_gramian(alpha):
    J = make_J(4, 12, seed=3, conflict=False)
    d = agg("fairgrad", alpha=alpha)(J)
    w = weights_of(J, d)
    G = J @ J.T
    assert torch.allclose(G @ w, w ** (-1 / alpha), rtol=1e-6)


def test_alpha_one_is_the_nash_bargaining_solution():
    J = make_J(3, 9, seed=5, conflict=False)
    d_fair = agg("fairgrad", alpha=1.0)(J)
    d_nash = agg("nash_mtl", tol=1e-8)(J)
    assert np.allclose(d_fair.numpy(), d_nash.numpy(), rtol=1e-4)


def test_scaling_law():
    J = make_J(3, 7, seed=2, conflict=False)
    for alpha in (0.5, 2.0):
        d, da = agg("fairgrad", alpha=alpha)(J), agg("fairgrad", alpha=alpha)(10 * J)
        assert torch.allclose(da, d * 10 ** ((1 - alpha) / (1 + alpha)), rtol=1e-6)


def test_bad_alpha():
    with pytest.raises(ConfigError, match="alpha"):
        agg("fairgrad", alpha=0)
