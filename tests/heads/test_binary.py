"""The binary head: loss and metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from mtlkit_plugins.heads.binary import Binary

from mtlkit.plugins import get_plugin_manager


def softplus(z: float) -> float:
    return math.log1p(math.exp(z))


LOGITS = [2.0, -1.0, 0.5, 0.0, 1.0]
TARGETS = [1, 1, 0, 0, 1]
# predictions (logit > 0): 1, 0, 1, 0, 1 -> TP = 2 (#0, #4), FN = 1 (#1), FP = 1 (#2), TN = 1 (#3)
BCE = [softplus(-2.0), softplus(1.0), softplus(0.5), softplus(0.0), softplus(-1.0)]


def test_metrics_match_hand_computed_values_over_several_batches():
    acc = Binary().metrics()
    acc.update(torch.tensor(LOGITS[:2]).view(-1, 1), torch.tensor(TARGETS[:2]))
    acc.update(torch.tensor(LOGITS[2:]).view(-1, 1), torch.tensor(TARGETS[2:], dtype=torch.float))
    m = acc.compute()
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert m["loss"] == pytest.approx(sum(BCE) / 5, rel=1e-6)


def test_loss_is_mean_bce_with_logits():
    head = Binary()
    loss = head.loss(torch.tensor(LOGITS).view(-1, 1), torch.tensor(TARGETS))
    assert float(loss) == pytest.approx(sum(BCE) / 5, rel=1e-6)
    # [B] outputs are accepted as well as the head's [B, 1]
    assert float(head.loss(torch.tensor(LOGITS), torch.tensor(TARGETS))) == pytest.approx(
        float(loss))


def test_f1_without_any_positive_is_zero_not_perfect():
    acc = Binary().metrics()
    acc.update(torch.tensor([[-1.0], [-2.0]]), torch.tensor([0, 0]))
    m = acc.compute()
    assert m["accuracy"] == 1.0
    assert m["f1"] == 0.0


def test_all_metrics_have_a_direction_for_delta_m():
    head = Binary()
    assert head.higher_is_better == {"accuracy": True, "f1": True, "loss": False}
    acc = head.metrics()
    acc.update(torch.zeros(1, 1), torch.ones(1))
    assert set(acc.compute()) == set(head.higher_is_better)


@pytest.mark.parametrize("bad", [2, -1])
def test_targets_other_than_zero_or_one_are_rejected(bad):
    head = Binary()
    with pytest.raises(ValueError, match="0 or 1"):
        head.loss(torch.zeros(2, 1), torch.tensor([1, bad]))
    with pytest.raises(ValueError, match="0 or 1"):
        head.metrics().update(torch.zeros(2, 1), torch.tensor([0, bad]))


def test_build_shapes_and_registration():
    head = get_plugin_manager().create("head", "binary", hidden=8)
    module = head.build(5)
    assert module(torch.zeros(3, 5)).shape == (3, 1)
    assert Binary().build(5)(torch.zeros(3, 5)).shape == (3, 1)
    with pytest.raises(ValueError, match="hidden"):
        Binary(hidden=0)
