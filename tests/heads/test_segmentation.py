"""Segmentation head: loss, confusion-matrix metrics against hand-computed values, bad labels."""

from __future__ import annotations

import math

import pytest
import torch
from mtlkit_plugins.heads.segmentation import Segmentation
from torch.nn import functional as F

from mtlkit import get_head
from mtlkit.errors import ConfigError, DataError

# one 2x3 image, 3 classes; -1 = unlabelled
TARGET = torch.tensor([[[0, 0, 1], [2, -1, 1]]])
PRED = torch.tensor([[[0, 1, 1], [2, 2, 0]]])


def logits_for(pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(pred, num_classes).permute(0, 3, 1, 2).float() * 5.0


def test_metrics_match_hand_computed_confusion_matrix():
    # 5 labelled pixels, 3 correct. IoU: class 0 = 1/(1+1+1), class 1 = 1/(1+1+1),
    # class 2 = 1/1 (its false positive is on the unlabelled pixel, which does not count)
    acc = Segmentation(3).metrics()
    acc.update(logits_for(PRED, 3), TARGET)
    m = acc.compute()
    assert m["pixel_acc"] == pytest.approx(3 / 5)
    assert m["miou"] == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)


def test_metrics_accumulate_over_the_split_not_per_batch():
    t2 = torch.tensor([[[1, 1, 1], [1, 1, 1]]])
    p2 = torch.tensor([[[1, 1, 1], [1, 1, 0]]])
    acc = Segmentation(3).metrics()
    acc.update(logits_for(PRED, 3), TARGET)
    acc.update(logits_for(p2, 3), t2)
    # split totals: 11 labelled, 8 correct; class 0: TP 1, FP 2, FN 1; class 1: TP 6, FP 1,
    # FN 2; class 2: TP 1, FP 0, FN 0
    m = acc.compute()
    assert m["pixel_acc"] == pytest.approx(8 / 11)
    assert m["miou"] == pytest.approx((1 / 4 + 6 / 9 + 1) / 3)


def test_classes_absent_from_labels_and_predictions_are_left_out_of_miou():
    acc = Segmentation(5).metrics()
    acc.update(logits_for(PRED, 5), TARGET)
    assert acc.compute()["miou"] == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)


def test_loss_is_cross_entropy_over_labelled_pixels():
    head = Segmentation(3)
    logits = torch.randn(1, 3, 2, 3)
    expected = F.nll_loss(F.log_softmax(logits, dim=1), TARGET, ignore_index=-1)
    assert head.loss(logits, TARGET).item() == pytest.approx(expected.item())
    assert head.loss(torch.zeros(1, 3, 2, 3), TARGET).item() == pytest.approx(math.log(3))


def test_float_labels_as_stored_in_the_npy_release_are_accepted():
    head = Segmentation(3)
    logits = torch.randn(1, 3, 2, 3)
    assert head.loss(logits, TARGET.float()).item() == pytest.approx(
        head.loss(logits, TARGET).item())


def test_all_unlabelled_batch_gives_a_zero_loss_with_a_graph():
    logits = torch.randn(1, 3, 2, 3, requires_grad=True)
    loss = Segmentation(3).loss(logits, torch.full((1, 2, 3), -1))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("bad", [3, -2, 0.5])
def test_labels_out_of_range_are_data_errors(bad):
    target = TARGET.clone().float()
    target[0, 0, 0] = bad
    head = Segmentation(3)
    with pytest.raises(DataError, match="segmentation"):
        head.loss(torch.randn(1, 3, 2, 3), target)
    with pytest.raises(DataError, match="segmentation"):
        head.metrics().update(torch.randn(1, 3, 2, 3), target)


def test_shape_mismatch_is_a_data_error():
    with pytest.raises(DataError, match="shape"):
        Segmentation(3).loss(torch.randn(1, 3, 2, 3), torch.zeros(1, 3, 2, dtype=torch.long))


def test_build_returns_a_conv_prediction_layer_and_signs():
    head = get_head("segmentation", num_classes=13)
    out = head.build(8)(torch.randn(2, 8, 5, 7))
    assert out.shape == (2, 13, 5, 7)
    assert head.higher_is_better == {"miou": True, "pixel_acc": True}
    assert head.primary_metric == "miou"


@pytest.mark.parametrize("params", [{"num_classes": 1}, {"num_classes": 3, "ignore_index": 1}])
def test_bad_parameters(params):
    with pytest.raises(ConfigError):
        Segmentation(**params)


def test_predicted_label_maps_give_the_same_metrics_as_logits():
    acc = Segmentation(3).metrics()
    acc.update(PRED, TARGET)
    assert acc.compute() == pytest.approx({"miou": 5 / 9, "pixel_acc": 3 / 5})
