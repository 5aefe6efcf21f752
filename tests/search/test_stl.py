"""``stl = true``: single-task baselines trained once per setting, so every trial has Δm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from search_helpers import write_spec

from mtlkit.errors import ConfigError
from mtlkit.search.spec import load_spec
from mtlkit.search.stl import prepare_stl, stl_setting, with_baselines

TINY = """
[search]
name = "stl"
stl = true
metric = "delta_m"
mode = "min"
[base]
benchmark = "multi_mnist"
epochs = 1
max_steps = 2
batch_size = 32
benchmark_params = { n_train = 128, n_val = 64, n_test = 64 }
[grid]
aggregator = ["mean", "pcgrad"]
"benchmark_params.n_val" = [64, 96]
seed = [3, 4]
"""


def test_stl_must_be_a_boolean_and_lets_delta_m_be_the_metric(tmp_path):
    spec = load_spec(write_spec(tmp_path, TINY))
    assert spec.stl and spec.metric == "delta_m"
    with pytest.raises(ConfigError, match=r"invalid \[search\] stl='yes': must be true"):
        load_spec(write_spec(tmp_path, TINY.replace("stl = true", 'stl = "yes"')))
    # without it the benchmark ships no baselines: refused, and the error names the way out
    with pytest.raises(ConfigError, match="stl = true in \\[search\\]"):
        load_spec(write_spec(tmp_path, TINY.replace("stl = true", "stl = false")))


def test_one_setting_per_single_task_problem_not_per_method_or_seed(tmp_path):
    spec = load_spec(write_spec(tmp_path, TINY))
    settings = {stl_setting(t.values) for t in spec.trials()}
    assert len(spec.trials()) == 8 and len(settings) == 2   # n_val matters; method, seed do not
    values = spec.trials()[0].values
    for change in ({"aggregator": "cagrad"}, {"mask": "psn", "density": 0.3}, {"seed": 9},
                   {"probes": []}, {"threads": 1}):
        assert stl_setting({**values, **change}) == stl_setting(values)
    for change in ({"lr": 0.5}, {"epochs": 2}, {"benchmark_params": {"n_train": 256}}):
        assert stl_setting({**values, **change}) != stl_setting(values)


def test_prepare_trains_each_setting_once_and_trials_read_its_baselines(tmp_path, capsys):
    spec = load_spec(write_spec(tmp_path, TINY))
    out = tmp_path / "out"
    paths = prepare_stl(spec, out)
    assert len(paths) == 2
    for path in paths.values():
        baselines = json.loads(Path(path).read_text())
        assert set(baselines) == {"left", "right"}
        assert 0.0 <= baselines["left"]["accuracy"] <= 1.0
    first = capsys.readouterr().out
    assert first.count("training into") == 2 and "(seed 3)" in first
    stamps = {p: Path(p).stat().st_mtime_ns for p in paths.values()}
    assert prepare_stl(spec, out) == paths                      # reused, nothing trained
    assert "training into" not in capsys.readouterr().out
    assert {p: Path(p).stat().st_mtime_ns for p in paths.values()} == stamps
    for trial in spec.trials():
        values = with_baselines(trial.to_dict(), paths)["values"]
        assert values["baselines"] == paths[stl_setting(trial.values)]


def test_a_trial_that_names_its_own_baselines_keeps_them(tmp_path):
    own = tmp_path / "mine.json"
    own.write_text(json.dumps({"left": {"accuracy": 0.9}, "right": {"accuracy": 0.9}}))
    spec = load_spec(write_spec(tmp_path, TINY.replace(
        'benchmark = "multi_mnist"', f'benchmark = "multi_mnist"\nbaselines = "{own}"')))
    assert prepare_stl(spec, tmp_path / "out") == {}
    trial = spec.trials()[0].to_dict()
    assert with_baselines(trial, {}) == trial
