import functools
import math

import pytest
import torch
from mtlkit_plugins.aggregators.trimmed_mean import TrimmedMean

from mtlkit.errors import ConfigError
from mtlkit.testing.pytest_plugin import aggregator_suite
from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import EPS64

# beta = 0.25 trims floor(K/4) per side, so every K the kit draws is valid (and K >= 4 trims)
test_trimmed_mean_properties = aggregator_suite(
    functools.partial(TrimmedMean, beta=0.25), max_examples=8, max_tasks=12, max_dim=300)


def trimmed_reference(J: torch.Tensor, b: int) -> list[float]:
    """The definition, coordinate by coordinate, with Python's sort and exact summation."""
    out = []
    for column in J.double().T.tolist():
        kept = sorted(column)[b:len(column) - b]
        out.append(math.fsum(kept) / len(kept))
    return out


@pytest.mark.parametrize(("K", "b"), [(3, 1), (5, 2), (6, 1), (9, 3), (4, 0)])
def test_trimmed_mean_matches_the_definition(K, b):
    J = make_J(K, 11, seed=K + b)
    d = agg("trimmed_mean", trim_number=b)(J)
    ref = torch.tensor(trimmed_reference(J, b), dtype=torch.float64)
    # a mean of K - 2b float64 values: relative error <= K·eps of the largest magnitude summed
    assert float((d - ref).abs().max()) <= 4 * K * EPS64 * float(J.abs().max())


@pytest.mark.parametrize(("beta", "K", "b"), [(0.0, 5, 0), (0.2, 5, 1), (0.2, 4, 0),
                                              (0.49, 7, 3), (0.3, 10, 3)])
def test_trimmed_mean_beta_is_the_papers_fraction(beta, K, b):
    a = agg("trimmed_mean", beta=beta)
    assert a.trimmed(K) == b
    J = make_J(K, 6, seed=3)
    assert torch.allclose(a(J), torch.tensor(trimmed_reference(J, b), dtype=torch.float64),
                          rtol=0, atol=4 * K * EPS64 * float(J.abs().max()))


def test_one_corrupted_task_cannot_move_a_coordinate_outside_the_others_range():
    J = make_J(5, 20, seed=7)
    J[2] = 1e12 * torch.sign(torch.randn(20, generator=torch.Generator().manual_seed(0),
                                         dtype=torch.float64))
    d = agg("trimmed_mean")(J)
    others = J[[0, 1, 3, 4]]
    assert bool((d >= others.min(0).values).all() and (d <= others.max(0).values).all())


def test_too_few_tasks_for_the_trimming_is_a_config_error():
    with pytest.raises(ConfigError, match="needs at least 3 tasks"):
        agg("trimmed_mean")(make_J(2, 4))
    with pytest.raises(ConfigError, match="needs at least 5 tasks"):
        agg("trimmed_mean", trim_number=2).configure(4)


@pytest.mark.parametrize("params", [{"trim_number": -1}, {"trim_number": 1.5},
                                    {"trim_number": True}, {"beta": 0.5}, {"beta": -0.1},
                                    {"beta": float("nan")}, {"trim_number": 1, "beta": 0.1}])
def test_trimmed_mean_rejects_bad_parameters(params):
    with pytest.raises(ConfigError):
        agg("trimmed_mean", **params)
