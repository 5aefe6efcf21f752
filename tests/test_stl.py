"""--stl single-task baselines, reused by --baselines for delta_m in both conventions."""

from __future__ import annotations

import json

import pytest

from mtlkit.cli import main

SMALL = ["--benchmark-param", "n_train=128", "--benchmark-param", "n_val=32",
         "--benchmark-param", "n_test=64", "--max-steps", "3", "--epochs", "1",
         "--batch-size", "32", "--threads", "1", "--quiet"]


def test_stl_baselines_feed_delta_m(tmp_path):
    stl = tmp_path / "stl"
    assert main(["train", "--stl", "--mask", "psn", "--density", "0.3", *SMALL,
                 "--out", str(stl)]) == 0
    baselines = json.loads((stl / "stl_baselines.json").read_text())
    assert set(baselines) == {"left", "right"}
    assert set(baselines["left"]) == {"accuracy"}  # the test loss is not a delta_m metric
    single = json.loads((stl / "stl" / "left" / "results.json").read_text())
    assert list(single["tasks"]) == ["left"] and single["mask"] == "dense"

    run = tmp_path / "mtl"
    assert main(["train", *SMALL, "--baselines", str(stl / "stl_baselines.json"),
                 "--out", str(run)]) == 0
    r = json.loads((run / "results.json").read_text())
    acc = {t: r["tasks"][t]["accuracy"] for t in ("left", "right")}
    rel = [(acc[t] - baselines[t]["accuracy"]) / baselines[t]["accuracy"] for t in acc]
    assert r["delta_m"] == pytest.approx(-100 * sum(rel) / 2)
    assert r["delta_m_task_level"] == pytest.approx(100 * sum(rel) / 2)
    conv = r["delta_m_conventions"]
    assert conv["metric_level"]["better"] == "lower" and conv["task_level"]["better"] == "higher"
    assert r["delta_m_convention"] == "metric_level"
