"""The base class's input validation (fast path included)."""

from __future__ import annotations

import math

import pytest
import torch
from mtlkit_plugins.aggregators.mean import Mean

from mtlkit.aggregation import check_jacobian
from mtlkit.errors import GradientError


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_entry_names_its_row(bad):
    J = torch.ones(3, 5)
    J[1, 2] = bad
    with pytest.raises(GradientError, match="task gradient for b;"):
        check_jacobian(J, ["a", "b", "c"])


def test_inf_and_minus_inf_in_one_row_are_caught():
    J = torch.ones(2, 4, dtype=torch.float64)
    J[0, 0], J[0, 1] = math.inf, -math.inf
    with pytest.raises(GradientError, match="row 0"):
        Mean()(J)


def test_finite_rows_whose_sum_overflows_are_accepted():
    J = torch.full((2, 4), 3e38, dtype=torch.float32)  # row sums overflow to inf
    check_jacobian(J)  # finite entries: no error


def test_all_zero_and_tiny_inputs():
    assert not Mean()(torch.zeros(3, 4)).any()
    J = torch.zeros(2, 3)
    J[1, 2] = -1e-30
    assert Mean()(J)[2] == -5e-31


def test_zero_coordinates():
    assert Mean()(torch.zeros(3, 0)).shape == (0,)
