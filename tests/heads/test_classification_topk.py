"""Top-k accuracy of the classification head (ST reports top-5 on SmallNORB)."""

from __future__ import annotations

import pytest
import torch
from mtlkit_plugins.heads.classification import Classification


def test_top2_matches_hand_computed_value():
    head = Classification(4, top_k=(2,))
    logits = torch.tensor([[0.1, 0.9, 0.5, 0.0],    # ranking 1, 2, 0, 3
                           [0.8, 0.1, 0.2, 0.3],    # ranking 0, 3, 2, 1
                           [0.0, 0.1, 0.2, 0.3]])   # ranking 3, 2, 1, 0
    target = torch.tensor([2, 1, 3])  # top-1 hits: #2; top-2 hits: #0, #2
    acc = head.metrics()
    acc.update(logits, target)
    m = acc.compute()
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["top2"] == pytest.approx(2 / 3)
    assert head.higher_is_better["top2"] is True
    assert "top2" not in Classification.higher_is_better  # the class default is untouched


@pytest.mark.parametrize("k", [1, 5, True])
def test_invalid_top_k(k):
    with pytest.raises(ValueError, match="top_k"):
        Classification(4, top_k=(k,))
