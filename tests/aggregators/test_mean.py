import torch

from tests.aggregators.helpers import agg, make_J


def test_mean_is_the_row_average():
    J = make_J(5, 7)
    assert torch.allclose(agg("mean")(J), J.sum(0) / 5)
