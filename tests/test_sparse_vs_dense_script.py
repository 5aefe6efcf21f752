"""benchmarks/sparse_vs_dense.py: the commands it runs and the tables it builds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from scipy import stats

from mtlkit.results import write_csv, write_json

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("sparse_vs_dense", BENCH / "sparse_vs_dense.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_lists_stl_then_every_arm_for_every_aggregator_and_seed(script, capsys,
                                                                       tmp_path):
    script.main(["--benchmark", "multi_mnist", "--aggregator", "mean", "--aggregator", "pcgrad",
                 "--seeds", "0", "1", "--density", "0.1", "0.4", "--epochs", "2",
                 "--out", str(tmp_path), "--dry-run"])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("+ mtlkit")]
    assert sum("--stl" in x for x in lines) == 2
    train = [x for x in lines if "--stl" not in x]
    assert len(train) == 2 * 3 * 2  # aggregators x (dense + 2 densities) x seeds
    assert all("--threads 1" in x and "--probe cosine" in x and "--baselines" in x
               for x in train)
    assert sum("--mask psn --density 0.4" in x for x in train) == 4
    assert sum("--aggregator pcgrad" in x for x in train) == 6
    assert not any("--backbone-weights" in x for x in lines)


def test_pretrained_setting_pretrains_once_and_loads_the_encoder(script, capsys, tmp_path):
    script.main(["--benchmark", "multi_mnist", "--aggregator", "mean", "--seeds", "0",
                 "--density", "0.3", "--pretrain", "--epochs 1", "--setting", "pretrained",
                 "--out", str(tmp_path), "--dry-run"])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("+ ")]
    assert "pretrain_encoder.py" in lines[0] and "--epochs 1" in lines[0]
    runs = lines[1:]
    assert len(runs) == 1 + 2  # STL + dense + psn
    weights = str(tmp_path / "pretrained_encoder.pt")
    assert all(f"--backbone-weights {weights}" in x for x in runs)
    assert all(str(tmp_path / "pretrained") in x for x in runs)


def _write(folder, arm, seed, inc, dm, wall):
    write_json(folder / "results.json", {
        "aggregator": "mean", "mask": arm, "seed": seed,
        "trainable_fraction": 1.0 if arm == "dense" else 0.3,
        "tasks": {"a": {"accuracy": 0.8 + seed / 10, "loss": 1.0}},
        "conflict": {"incidence_all": inc, "incidence_last_half": inc,
                     "incidence_trainable_all": inc / 2,
                     "incidence_trainable_last_half": inc / 2},
        "delta_m": dm, "delta_m_task_level": -dm, "wall_s": wall, "steps": 10,
        "mask_info": {"k": 7}})
    write_csv(folder / "steps.csv", [{"step": 0, "cosine.incidence": inc,
                                      "cosine.incidence_trainable": inc / 2}])


def test_tables_paired_test_and_speed(script, tmp_path):
    import _svd_report as report

    dense_inc, psn_inc = [0.40, 0.50, 0.45], [0.30, 0.35, 0.38]
    folders = []
    for arm, incs in (("dense", dense_inc), ("psn-0.3", psn_inc)):
        for seed, inc in enumerate(incs):
            f = tmp_path / "mm" / "mean" / arm / f"seed{seed}"
            _write(f, "dense" if arm == "dense" else "psn", seed, inc, 1.0 + seed,
                   2.0 if arm == "dense" else 1.0)
            folders.append(f)
    groups = report.load([*folders, tmp_path / "missing"])
    lines = report.table(groups)
    assert "a accuracy" in lines[0] and "loss" not in lines[0]
    assert "| 45.00 ± 5.00 |" in lines[2] and "| 90.00 ± 10.00 |" in lines[2]
    assert "psn-0.3 (K=7)" in lines[3]
    rows = report.paired_table("pretrained", groups)
    per_method = next(r for r in rows if "| mean |" in r)
    # reference: scipy's paired t-test on the same per-seed differences, in points
    p = stats.ttest_rel([100 * x for x in psn_inc], [100 * x for x in dense_inc]).pvalue
    assert "| -10.67 ± 4.04 |" in per_method and f"| {p:.3f} |" in per_method
    speed = report.speed_rows("pretrained", groups)
    assert len(speed) == 1 and "| 0.500 |" in speed[0]  # PSN took half the time per step


def test_stat_never_writes_plus_minus_zero_for_one_run():
    sys.path.insert(0, str(BENCH))
    import _svd_report as report

    assert report.stat([0.5], 100) == "50.00 (n = 1)"
    assert report.stat([None]) == "–"
