"""The layer_conflict probe: Recon's per-layer cosines and S-conflict counts."""

from __future__ import annotations

import math

import pytest
import torch
from mtlkit_plugins.probes.layer_conflict import LayerConflictProbe

import mtlkit
from mtlkit.errors import ConfigError
from mtlkit.probing import GradientObservation, ParamLayout

# two layers: "a" (weight [2] + bias [1]) and "b" (weight [2]); model order a, b
NAMES = ["enc.a.weight", "enc.a.bias", "enc.b.weight"]
SHAPES = [(2,), (1,), (2,)]


def layout() -> ParamLayout:
    sizes = [2, 1, 2]
    offsets = [0, 2, 3]
    return ParamLayout(NAMES, SHAPES, offsets, sizes, offsets, sizes)


def observation(grads: list[list[list[float]]], step: int = 0, progress: float = 0.0
                ) -> GradientObservation:
    """``grads[k]`` = task k's flat gradient over (a.weight, a.bias, b.weight)."""
    J = torch.tensor(grads, dtype=torch.float64)
    full = [[row[0:2], row[2:3], row[3:5]] for row in J]
    return GradientObservation(step=step, epoch=0, progress=progress,
                               task_names=[f"t{k}" for k in range(len(grads))], J=J,
                               full_grads=full, layout=layout(), losses=torch.zeros(len(grads)))


def cos(u, v) -> float:
    return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) *
                                                        sum(b * b for b in v))


STEPS = [
    # t0, t1, t2 over (a.w0, a.w1, a.b, b.w0, b.w1)
    [[1, 0, 0, 1, 1], [-1, 0.2, 0, 1, 0.5], [0.5, 1, 1, -1, -1]],
    [[1, 1, 1, 0, 1], [1, -1, -0.5, 0, -1], [0, 0, 1, 2, 0.1]],
]


@pytest.mark.parametrize("S", [-0.5, -0.1, 0.0, 0.3])
def test_counts_and_mean_cosines_match_a_direct_computation(S):
    probe = LayerConflictProbe(threshold=S)
    for i, grads in enumerate(STEPS):
        probe.observe(observation(grads, step=i))
    expected_counts = {"enc.a": 0, "enc.b": 0}
    cos_sum = {"enc.a": 0.0, "enc.b": 0.0}
    for grads in STEPS:
        for i in range(3):
            for j in range(i + 1, 3):
                for layer, sl in (("enc.a", slice(0, 3)), ("enc.b", slice(3, 5))):
                    c = cos(grads[i][sl], grads[j][sl])
                    expected_counts[layer] += c < S
                    cos_sum[layer] += c
    summary = probe.summary()
    assert summary["layers"] == ["enc.a", "enc.b"]
    assert summary["s_conflict_counts"] == expected_counts
    for layer in ("enc.a", "enc.b"):
        assert summary["mean_cosine"][layer] == pytest.approx(cos_sum[layer] / 6)
    assert summary["threshold"] == S
    assert summary["observed_steps"] == 2
    assert isinstance(summary["s_conflict_counts"]["enc.a"], int)


def test_summary_has_the_plot_contract_keys_and_steps_record_is_compact():
    probe = mtlkit.get_probe("layer_conflict", threshold=0.0, every=3)
    assert probe.every == 3
    record = probe.observe(observation(STEPS[0]))
    assert set(record) == {"layers_in_conflict", "s_conflicts", "min_layer_cosine"}
    assert record["layers_in_conflict"] == 2  # both layers have a pair below 0
    summary = probe.summary()
    assert {"layers", "s_conflict_counts", "mean_cosine", "threshold",
            "observed_steps"} <= set(summary)
    assert record["s_conflicts"] == sum(summary["s_conflict_counts"].values())


def test_zero_gradient_pairs_never_count():
    probe = LayerConflictProbe(threshold=1.0)  # every defined cosine is < 1 here
    probe.observe(observation([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0]]))
    # layer a: cos = 0 < 1 counts; layer b: task 0's gradient is zero, not a conflict
    assert probe.summary()["s_conflict_counts"] == {"enc.a": 1, "enc.b": 0}


def test_subset_measures_the_concatenated_gradient_of_those_layers():
    probe = LayerConflictProbe(threshold=0.0, subset=["enc.b"])
    probe.observe(observation([[1, 0, 0, 1, 0], [1, 0, 0, -1, 0]], progress=0.0))
    probe.observe(observation([[1, 0, 0, 1, 0], [-1, 0, 0, 1, 0]], progress=0.6))
    sub = probe.summary()["subset"]
    assert sub["incidence_all"] == 0.5 and sub["incidence_last_half"] == 0.0
    assert sub["layer_s_conflict_rate"] == 0.5


def test_unknown_subset_layer_is_a_clear_error():
    probe = LayerConflictProbe(subset=["enc.zzz"])
    with pytest.raises(ConfigError, match=r"invalid subset layer 'enc\.zzz'"):
        probe.observe(observation(STEPS[0]))


@pytest.mark.parametrize("S", [1.5, -1.01, float("nan"), True, "0"])
def test_threshold_outside_minus_one_one_is_rejected(S):
    with pytest.raises(ConfigError, match=r"invalid threshold=.*must be a number in \[-1, 1\]"):
        mtlkit.get_probe("layer_conflict", threshold=S)


def test_every_must_be_positive():
    with pytest.raises(ConfigError, match="invalid every=0"):
        mtlkit.get_probe("layer_conflict", every=0)


def test_empty_summary_keeps_the_format():
    summary = LayerConflictProbe(threshold=-0.1).summary()
    assert summary["layers"] == [] and summary["observed_steps"] == 0
    assert summary["s_conflict_counts"] == {} and summary["threshold"] == -0.1
