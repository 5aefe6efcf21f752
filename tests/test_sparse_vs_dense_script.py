"""benchmarks/sparse_vs_dense.py: the commands it runs and the table it builds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mtlkit.results import write_csv, write_json

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "sparse_vs_dense.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("sparse_vs_dense", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_lists_stl_then_both_arms_for_every_aggregator_and_seed(script, capsys,
                                                                        tmp_path):
    script.main(["--benchmark", "multi_mnist", "--aggregator", "mean", "--aggregator", "pcgrad",
                 "--seeds", "0", "1", "--density", "0.4", "--epochs", "2",
                 "--out", str(tmp_path), "--dry-run"])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("+ mtlkit")]
    assert sum("--stl" in x for x in lines) == 2
    train = [x for x in lines if "--stl" not in x]
    assert len(train) == 2 * 2 * 2  # aggregators x arms x seeds
    assert all("--threads 1" in x and "--probe cosine" in x and "--baselines" in x
               for x in train)
    assert sum("--mask psn --density 0.4" in x for x in train) == 4
    assert sum("--aggregator pcgrad" in x for x in train) == 4


def test_table_aggregates_seeds(script, tmp_path):
    folders = []
    for arm, inc in (("dense", 0.4), ("psn", 0.2)):
        for seed, acc in ((0, 0.8), (1, 0.9)):
            f = tmp_path / "mm" / "mean" / arm / f"seed{seed}"
            write_json(f / "results.json", {
                "aggregator": "mean", "mask": arm, "seed": seed,
                "trainable_fraction": 1.0 if arm == "dense" else 0.6,
                "tasks": {"a": {"accuracy": acc, "loss": 1.0}},
                "conflict": {"incidence_all": inc, "incidence_last_half": inc,
                             "incidence_trainable_all": inc / 2,
                             "incidence_trainable_last_half": inc / 2},
                "delta_m": 1.0 + seed, "delta_m_task_level": -1.0 - seed, "wall_s": 3.0,
                "mask_info": {"k": 7}})
            write_csv(f / "steps.csv", [{"step": 0, "cosine.incidence": inc,
                                         "cosine.incidence_trainable": inc / 2}])
            folders.append(f)
    lines, plots = script.table("mm", folders, tmp_path / "img")
    assert "a accuracy" in lines[0] and "loss" not in lines[0]
    dense, psn = lines[2], lines[3]
    assert "| 40.00 ± 0.00 |" in dense and "| 85.00 ± 7.07 |" in dense
    assert "psn (K=7)" in psn and "| 10.00 ± 0.00 |" in psn and "| 1.50 ± 0.71 |" in psn
    assert len(plots) == 1 and Path(plots[0]).is_file()
