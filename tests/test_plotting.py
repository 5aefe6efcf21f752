"""mtlkit plot: conflict incidence curves and the per-layer profile (synthetic run folders)."""

from __future__ import annotations

import pytest

from mtlkit import plotting
from mtlkit.cli import main
from mtlkit.results import write_csv, write_json

pytest.importorskip("matplotlib")


def _run(tmp_path, name, mask, incidences, layer=True):
    run = tmp_path / name
    rows = [{"step": i, "epoch": 0, "cosine.incidence": v, "cosine.incidence_trainable": v / 2}
            for i, v in enumerate(incidences)]
    write_csv(run / "steps.csv", rows)
    results = {"aggregator": "mean", "mask": mask, "seed": 0,
               "trainable_fraction": 1.0 if mask == "dense" else 0.3, "probes": {}}
    if layer:
        results["probes"]["layer_conflict"] = {
            "layers": ["encoder.conv1", "encoder.conv2", "encoder.fc"],
            "s_conflict_counts": {"encoder.conv1": 3, "encoder.conv2": 7, "encoder.fc": 1},
            "mean_cosine": {"encoder.conv1": 0.1, "encoder.conv2": -0.05, "encoder.fc": 0.3},
            "threshold": 0.0}
    write_json(run / "results.json", results)
    return run


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_seeds_sharing_a_label_are_averaged_and_smoothed(tmp_path):
    a = _run(tmp_path, "a", "psn", [1, 0, 1, 0])
    b = _run(tmp_path, "b", "psn", [0, 0, 1, 1])
    d = _run(tmp_path, "d", "dense", [1, 1, 1, 1])
    curves = plotting.conflict_curves([a, b, d], window=2)
    sparse = curves["mean + psn (30% trainable)"]
    assert sparse["runs"] == 2
    assert sparse["full"] == pytest.approx([0.5, 0.25, 0.5, 0.75])
    assert sparse["trainable"] == pytest.approx([0.25, 0.125, 0.25, 0.375])
    assert curves["mean + dense"]["trainable"] is None  # same as full for a dense mask


def test_cli_draws_both_charts(tmp_path, capsys):
    runs = [str(_run(tmp_path, "dense", "dense", [1, 0] * 10)),
            str(_run(tmp_path, "psn", "psn", [0, 0, 1] * 7))]
    assert main(["plot", "conflict", *runs, "--out", str(tmp_path / "c.png")]) == 0
    assert main(["plot", "layers", *runs, "--out", str(tmp_path / "l.png"),
                 "--label", "dense", "--label", "psn 30%"]) == 0
    assert _is_png(tmp_path / "c.png") and _is_png(tmp_path / "l.png")


@pytest.mark.parametrize("chart, extra, match", [
    ("layers", [], "no probes.layer_conflict"),
    ("conflict", ["--window", "0"], "--window"),
    ("conflict", ["--label", "x", "--label", "y"], "2 labels for 1 runs"),
])
def test_bad_input(tmp_path, capsys, chart, extra, match):
    run = _run(tmp_path, "r", "psn", [0, 1], layer=False)
    rc = main(["plot", chart, str(run), "--out", str(tmp_path / "o.png"), *extra])
    assert rc == 2 and match in capsys.readouterr().err


def test_missing_run_is_named(tmp_path, capsys):
    rc = main(["plot", "conflict", str(tmp_path / "nope"), "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "nope" in err
