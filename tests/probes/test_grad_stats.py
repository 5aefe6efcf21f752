"""grad_stats probe: norms, gradient-magnitude similarity, condition number."""

from __future__ import annotations

import math

import pytest
import torch
from mtlkit_plugins.probes.grad_stats import gradient_stats

import mtlkit
from mtlkit.probing import GradientObservation, ParamLayout


def _obs(J, step=0):
    n = J.shape[1]
    layout = ParamLayout(["w"], [(n,)], [0], [n], [0], [n])
    return GradientObservation(step=step, epoch=0, progress=0.0, task_names=["a", "b"], J=J,
                               full_grads=[[J[0]], [J[1]]], layout=layout,
                               losses=torch.zeros(2))


def test_known_values():
    J = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    s = gradient_stats(J @ J.T)
    assert s["norms"] == pytest.approx([3.0, 1.0])
    assert s["gms"] == pytest.approx(2 * 3 * 1 / (9 + 1))
    assert s["condition_number"] == pytest.approx(3.0)


def test_rank_deficient_jacobian_has_infinite_condition_number():
    J = torch.tensor([[1.0, 2.0], [2.0, 4.0]])
    assert math.isinf(gradient_stats(J @ J.T)["condition_number"])


def test_condition_number_matches_svd():
    torch.manual_seed(0)
    J = torch.randn(4, 30, dtype=torch.float64)
    s = torch.linalg.svdvals(J)
    assert gradient_stats(J @ J.T)["condition_number"] == pytest.approx(float(s[0] / s[-1]))


def test_probe_records_and_summarises():
    probe = mtlkit.get_probe("grad_stats")
    rec = probe.observe(_obs(torch.tensor([[3.0, 0.0], [0.0, 1.0]])))
    probe.observe(_obs(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), step=1))
    assert rec["norm.a"] == pytest.approx(3.0) and rec["gms_trainable"] == rec["gms"]
    s = probe.summary()
    assert s["mean_norm"]["a"] == pytest.approx(2.0)
    assert s["mean_gms"] == pytest.approx((0.6 + 1.0) / 2)
    assert s["mean_condition_number"] == pytest.approx(2.0)
