"""Depth head: masked L1 loss, abs/rel error on valid pixels, per-pixel vs per-batch means."""

from __future__ import annotations

import math

import pytest
import torch
from mtlkit_plugins.heads.depth import Depth

from mtlkit import get_head
from mtlkit.errors import ConfigError, DataError

# batch 1: 3 valid pixels (target 0 = unknown), errors 1, 1, 0
T1 = torch.tensor([[[[1.0, 0.0], [2.0, 4.0]]]])
P1 = torch.tensor([[[[2.0, 5.0], [1.0, 4.0]]]])
# batch 2: 1 valid pixel, error 2
T2 = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
P2 = torch.tensor([[[[3.0, 9.0], [9.0, 9.0]]]])


def test_loss_is_l1_over_valid_pixels():
    assert Depth().loss(P1, T1).item() == pytest.approx(2 / 3)


def test_metrics_on_one_batch():
    acc = Depth().metrics()
    acc.update(P1, T1)
    m = acc.compute()
    assert m["abs_err"] == pytest.approx(2 / 3)
    assert m["rel_err"] == pytest.approx((1 / 1 + 1 / 2 + 0 / 4) / 3)


def test_pixel_average_counts_every_valid_pixel_once():
    acc = Depth(average="pixel").metrics()
    acc.update(P1, T1)
    acc.update(P2, T2)
    m = acc.compute()
    assert m["abs_err"] == pytest.approx((1 + 1 + 0 + 2) / 4)
    assert m["rel_err"] == pytest.approx((1 + 0.5 + 0 + 2) / 4)


def test_batch_average_is_the_mean_of_per_batch_means_as_in_the_reference():
    acc = Depth(average="batch").metrics()
    acc.update(P1, T1)
    acc.update(P2, T2)
    m = acc.compute()
    assert m["abs_err"] == pytest.approx((2 / 3 + 2) / 2)
    assert m["rel_err"] == pytest.approx((0.5 + 2) / 2)


def test_channel_less_targets_are_accepted():
    assert Depth().loss(P1, T1[:, 0]).item() == pytest.approx(2 / 3)


def test_no_valid_pixel():
    pred = torch.randn(1, 1, 2, 2, requires_grad=True)
    loss = Depth().loss(pred, torch.zeros(1, 1, 2, 2))
    loss.backward()
    assert loss.item() == 0.0
    acc = Depth().metrics()
    acc.update(pred, torch.zeros(1, 1, 2, 2))
    assert math.isnan(acc.compute()["abs_err"])


def test_shape_mismatch_is_a_data_error():
    with pytest.raises(DataError, match="depth"):
        Depth().loss(torch.randn(1, 1, 2, 2), torch.ones(1, 1, 2, 3))


def test_registered_with_signs_and_a_one_channel_conv_head():
    head = get_head("depth")
    assert head.build(4)(torch.randn(2, 4, 3, 5)).shape == (2, 1, 3, 5)
    assert head.higher_is_better == {"abs_err": False, "rel_err": False}
    assert head.primary_metric == "abs_err"
    with pytest.raises(ConfigError):
        Depth(average="median")


def test_channel_less_predictions_and_targets():
    acc = Depth().metrics()
    acc.update(P1[:, 0], T1[:, 0])
    assert acc.compute()["abs_err"] == pytest.approx(2 / 3)
