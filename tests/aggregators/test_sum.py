import torch

from tests.aggregators.helpers import agg, make_J


def test_sum_is_K_times_mean():
    J = make_J(4, 9)
    assert torch.allclose(agg("sum")(J), 4 * agg("mean")(J))
    assert torch.allclose(agg("sum")(J), J[0] + J[1] + J[2] + J[3])
