"""Normal head: cosine loss, angular error statistics in degrees and fractions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mtlkit_plugins.heads.normal import Normal

from mtlkit import get_head
from mtlkit.errors import DataError

ANGLES = [0.0, 10.0, 20.0, 40.0]  # degrees from the target normal (0, 0, 1)


def batch(angles, invalid=1, scale=2.0):
    """Predictions at ``angles`` (not unit length: the head normalises) + invalid pixels."""
    a = np.radians(angles)
    pred = [[scale * math.sin(x), 0.0, scale * math.cos(x)] for x in a] + [[1.0, 0, 0]] * invalid
    gt = [[0.0, 0.0, 1.0]] * len(a) + [[0.0, 0.0, 0.0]] * invalid
    as_map = lambda v: torch.tensor(v).T.reshape(1, 3, 1, -1)  # noqa: E731
    return as_map(pred), as_map(gt)


def test_metrics_match_hand_computed_angles():
    pred, gt = batch(ANGLES)
    acc = Normal().metrics()
    acc.update(pred, gt)
    m = acc.compute()
    assert m["mean_angle"] == pytest.approx(17.5, abs=1e-4)
    assert m["median_angle"] == pytest.approx(15.0, abs=1e-4)
    assert m["within_11_25"] == pytest.approx(0.5)
    assert m["within_22_5"] == pytest.approx(0.75)
    assert m["within_30"] == pytest.approx(0.75)


def test_loss_is_one_minus_mean_cosine_over_valid_pixels():
    pred, gt = batch(ANGLES)
    expected = 1 - np.mean(np.cos(np.radians(ANGLES)))
    assert Normal().loss(pred, gt).item() == pytest.approx(expected, abs=1e-6)


def test_pixel_and_batch_averages():
    p1, g1 = batch([0.0, 10.0, 20.0])
    p2, g2 = batch([40.0])
    pixel, per_batch = Normal("pixel").metrics(), Normal("batch").metrics()
    for acc in (pixel, per_batch):
        acc.update(p1, g1)
        acc.update(p2, g2)
    assert pixel.compute()["median_angle"] == pytest.approx(15.0, abs=1e-4)
    assert pixel.compute()["within_11_25"] == pytest.approx(0.5)
    b = per_batch.compute()
    assert b["mean_angle"] == pytest.approx((10.0 + 40.0) / 2, abs=1e-4)
    assert b["median_angle"] == pytest.approx((10.0 + 40.0) / 2, abs=1e-4)
    assert b["within_11_25"] == pytest.approx((2 / 3 + 0) / 2)


def test_module_outputs_unit_normals():
    head = get_head("normal")
    out = head.build(4)(torch.randn(2, 4, 3, 5))
    assert out.shape == (2, 3, 3, 5)
    assert torch.allclose(out.norm(dim=1), torch.ones(2, 3, 5), atol=1e-5)
    assert head.higher_is_better["within_30"] is True
    assert head.higher_is_better["median_angle"] is False


def test_wrong_channels_is_an_error():
    with pytest.raises(DataError, match="normal"):
        Normal().loss(torch.randn(1, 3, 2, 2), torch.randn(1, 1, 2, 2))
