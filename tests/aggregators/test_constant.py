import functools

import pytest
import torch
from mtlkit_plugins.aggregators.constant import Constant

from mtlkit.errors import ConfigError, MtlkitError
from mtlkit.testing.pytest_plugin import aggregator_suite
from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import roundoff

# The weights belong to K = 2 rows, so the kit draws K <= 2 (K = 1 only for its single-task check).
test_constant_properties = aggregator_suite(
    functools.partial(Constant, weights=[0.3, 1.7]), max_examples=8, max_tasks=2, max_dim=300)


def test_constant_is_the_fixed_combination():
    J = make_J(3, 7, seed=1)
    w = [0.2, -1.0, 3.0]
    d = agg("constant", weights=w)(J)
    # closed form, summed row by row in float64 (not a matrix product like the implementation)
    ref = sum(wk * J[k] for k, wk in enumerate(w))
    assert float((d - ref).norm()) <= roundoff(J)


def test_constant_loss_weights_are_the_given_weights_unnormalised():
    a = agg("constant", weights=[2, 0.5])
    w = a.loss_weights(torch.tensor([5.0, 1.0]), {})
    assert w.tolist() == [2.0, 0.5]
    assert torch.allclose(agg("constant", weights=[1, 1])(make_J(2, 4)), make_J(2, 4).sum(0))


@pytest.mark.parametrize("bad", [None, [], "1,2", [1.0, float("nan")], [0.0, 0.0], [1, True],
                                 [[1.0, 2.0]]])
def test_constant_rejects_bad_weights(bad):
    with pytest.raises(ConfigError, match="weights"):
        agg("constant", weights=bad)


def test_constant_wrong_task_count_is_a_config_error():
    a = agg("constant", weights=[1.0, 2.0])
    with pytest.raises(ConfigError, match="2 entries but there are 3 tasks"):
        a.configure(3)
    with pytest.raises(ConfigError, match="3 tasks"):
        a(make_J(3, 5))
    with pytest.raises(ConfigError, match="3 tasks"):
        a.loss_weights(torch.ones(3), {})


def test_constant_unknown_parameter_is_refused():
    with pytest.raises(MtlkitError, match="no parameter 'weight'"):
        agg("constant", weight=[1.0])
