"""Spec parsing, validation and expansion; bad specs fail with one line before Ray starts."""

from __future__ import annotations

import csv  # noqa: F401
from pathlib import Path

import pytest
from search_helpers import write_spec

from mtlkit.cli import main
from mtlkit.errors import ConfigError
from mtlkit.search.spec import load_spec

REPO = Path(__file__).resolve().parents[2]

GOOD = """
[search]
name = "good"
[grid]
aggregator = ["mean"]
seed = [0, 1]
"""


def test_grid_expands_every_combination_with_variants(tmp_path):
    path = write_spec(tmp_path, """
        [variants.a]
        mask = "dense"
        [variants.b]
        mask = "dense"
        lr = 0.01
        [grid]
        "benchmark_params.n_val" = [64, 128]
        seed = [0, 1, 2]
    """)
    spec = load_spec(path)
    trials = spec.trials()
    assert len(trials) == 2 * 2 * 3
    assert spec.swept_keys == ["variant", "benchmark_params.n_val", "seed"]
    last = trials[-1]
    assert last.swept == {"variant": "b", "benchmark_params.n_val": 128, "seed": 2}
    assert last.values["lr"] == 0.01
    # the dotted key lands inside the table and keeps the [base] entries next to it
    assert last.values["benchmark_params"] == {"n_train": 256, "n_val": 128, "n_test": 128}


def test_plugin_params_apply_only_to_their_plugin(tmp_path):
    path = write_spec(tmp_path, """
        [grid]
        aggregator = ["mean", "cagrad"]
        [plugin_params.aggregator.cagrad]
        c = 0.4
    """)
    by_agg = {t.values["aggregator"]: t.values for t in load_spec(path).trials()}
    assert by_agg["cagrad"]["aggregator_params"] == {"c": 0.4}
    assert "c" not in by_agg["mean"].get("aggregator_params", {})


def test_quick_overrides_search_base_and_grid(tmp_path):
    path = write_spec(tmp_path, GOOD + """
        [search.quick]
        num_samples = 2
        [search.quick.grid]
        seed = [7]
        [search.quick.base]
        epochs = 1
    """)
    full, quick = load_spec(path), load_spec(path, quick=True)
    assert [t.values["seed"] for t in full.trials()] == [0, 1]
    assert [t.values["seed"] for t in quick.trials()] == [7]
    assert quick.num_samples == 2 and quick.trials()[0].values["epochs"] == 1
    assert full.fingerprint() != quick.fingerprint()


@pytest.mark.parametrize("body, key", [
    ('[grid]\naggregator = ["no_such_method"]\n', "'no_such_method'"),
    ('[base]\nmask = "psn_missing"\n[grid]\nseed = [0]\n', "[base] mask"),
    ('[grid]\nseed = []\n', "'seed' is an empty list"),
    ('[search]\ncpus_per_trial = -1\n[grid]\nseed = [0]\n', "cpus_per_trial=-1"),
    ('[search]\ngpus_per_trial = -0.5\n[grid]\nseed = [0]\n', "gpus_per_trial=-0.5"),
    ('[search]\nworkers_per_trial = 2\n[grid]\nseed = [0]\n', "'workers_per_trial'"),
    ('[grid]\nlearning_rate = [0.1]\n', "'learning_rate' in [grid]"),
    ('[grid]\n"aggregator_params.cc" = [0.1]\n', "no parameter 'cc'"),
    ('[grid]\ndensity = [1.5]\n', "density=1.5"),
    ('[grid]\nseed = 0\n', "must be a list"),
    ('[search]\nmetric = "accuracy"\n[grid]\nseed = [0]\n', "metric='accuracy'"),
    ('[search]\nscheduler = "hyperband"\n[grid]\nseed = [0]\n', "scheduler='hyperband'"),
    ('[sweep]\nseed = [0]\n', "unknown table 'sweep'"),
    ('[space]\nlr = {uniform = [0.1, 0.01]}\n[search]\nsearch_alg = "optuna"\n', "lo < hi"),
    ('[space]\nlr = {uniform = [0.01, 0.1]}\n', "needs search_alg = 'optuna'"),
])
def test_bad_spec_is_one_line_naming_the_key_before_anything_runs(tmp_path, capsys, body, key):
    path = write_spec(tmp_path, body)
    with pytest.raises(ConfigError, match=None) as info:
        load_spec(path)
    assert key in str(info.value) and str(path) in str(info.value)
    out = tmp_path / "out"
    assert main(["search", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0]
    assert not out.exists()  # nothing was started or written


def test_unknown_plugin_message_says_not_installed_and_lists_installed(tmp_path):
    path = write_spec(tmp_path, '[grid]\naggregator = ["mean", "cagrad_x"]\n')
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    msg = str(info.value)
    assert "[grid] aggregator = 'cagrad_x'" in msg and "not installed" in msg
    assert "mean" in msg


def test_dry_run_prints_trials_and_resources(tmp_path, capsys):
    path = write_spec(tmp_path, GOOD + "\n[search.quick]\n")
    assert main(["search", str(path), "--dry-run", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "2 trials, 1 CPU per trial" in out
    assert "aggregator=mean,seed=0" in out and "aggregator=mean,seed=1" in out
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name, quick, count", [
    ("sparsity_ratio", False, 7 * 3 * 3), ("sparsity_ratio", True, 8),
    ("method_table", False, 6 * 2 * 3), ("method_table", True, 4),
    ("cagrad_hpo", False, 24), ("cagrad_hpo", True, 3),
])
def test_bundled_specs_are_valid(name, quick, count):
    from mtlkit.search.runner import expected_trials

    # validated against the real bundled plugins (psn, cagrad, gradops, ...)
    spec = load_spec(REPO / "searches" / f"{name}.toml", quick=quick)
    assert expected_trials(spec) == count
