"""Regression head: MSE/L1 loss, MAE and RMSE over the split."""

from __future__ import annotations

import math

import pytest
import torch

from mtlkit import get_head
from mtlkit.errors import ConfigError, DataError


def test_metrics_over_two_batches():
    acc = get_head("regression").metrics()
    acc.update(torch.tensor([[1.0], [2.0]]), torch.tensor([0.0, 2.0]))
    acc.update(torch.tensor([[5.0]]), torch.tensor([2.0]))
    m = acc.compute()
    assert m["mae"] == pytest.approx((1 + 0 + 3) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 0 + 9) / 3))


@pytest.mark.parametrize(("loss", "expected"), [("mse", (1 + 9) / 4), ("l1", (1 + 3) / 4)])
def test_losses(loss, expected):
    head = get_head("regression", out_features=2, loss=loss)
    out = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[0.0, 2.0], [3.0, 7.0]])
    assert head.loss(out, target).item() == pytest.approx(expected)


def test_build_and_shape_checks():
    head = get_head("regression", out_features=3, hidden=5)
    assert head.build(4)(torch.randn(2, 4)).shape == (2, 3)
    with pytest.raises(DataError, match="shape"):
        head.loss(torch.randn(2, 3), torch.randn(2))
    assert head.higher_is_better == {"mae": False, "rmse": False}


@pytest.mark.parametrize("params", [{"loss": "huber"}, {"out_features": 0}, {"hidden": 0}])
def test_bad_parameters(params):
    with pytest.raises(ConfigError):
        get_head("regression", **params)
