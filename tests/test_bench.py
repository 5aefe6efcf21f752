"""``mtlkit bench aggregators``: output structure only (no timing is asserted)."""

from __future__ import annotations

import json

from mtlkit.bench import REFERENCE, Options, run_aggregators_bench, torchjd_available
from mtlkit.cli import main


def test_bench_tables_and_json(tmp_path):
    lines: list[str] = []
    opts = Options(methods=["mean", REFERENCE], ks=[2, 3], ns=[50], step_ks=[2, 3],
                   densities=[1.0, 0.5], rounds=1, inner=1, mlp_sizes=(12, 16, 8), batch=8,
                   parts=["latency", "steps", "density"])
    out = tmp_path / "bench.json"
    run_aggregators_bench(opts, emit=lines.append, json_path=str(out))
    text = "\n".join(lines)
    for title in ("Aggregator latency", "Training step", "Sparse training"):
        assert title in text
    data = json.loads(out.read_text())
    latency = data["aggregator_latency"]
    assert {(r["K"], r["method"]) for r in latency} == {
        (K, m) for K in (2, 3) for m in ("gramian+combination", "mean", REFERENCE)}
    steps = data["training_steps"]
    cases = {(r["workload"], r["K"]) for r in steps}
    assert cases == {("lenet", 2), ("mlp", 2), ("mlp", 3)}
    modes = {(r["method"], r["mode"]) for r in steps if r["workload"] == "mlp" and r["K"] == 3}
    torchjd = {(REFERENCE, "torchjd autojac"), (REFERENCE, "torchjd autogram")}
    assert modes == {("floor", "one backward"), ("floor", "K backward"),
                     ("floor", "K bwd stacked"), ("mean", "losses"), (REFERENCE, "loop"),
                     (REFERENCE, "gramian"), (REFERENCE, "batched"), (REFERENCE, "autogram"),
                     (REFERENCE, "own loop"),
                     *(torchjd if torchjd_available() else ())}
    floor = next(r for r in steps if r["mode"] == "K backward" and r["workload"] == "lenet")
    assert floor["ratio_k_backward"] == 1.0
    dens = data["density"]
    assert [r["density"] for r in dens] == [1.0, 0.5]  # mean takes the loss path: not listed
    assert dens[1]["n"] < dens[0]["n"]
    assert 0.4 < dens[1]["trainable_fraction"] < 0.7
    assert all(r["autogram_ms"] > 0 for r in dens)  # the step, not only the aggregation
    assert dens[0]["autogram_ratio_to_dense"] == 1.0


def test_bench_memory_rows(tmp_path):
    lines: list[str] = []
    opts = Options(methods=[REFERENCE], step_ks=[2], mlp_sizes=(12, 16, 8), batch=8,
                   workloads=["mlp"], parts=["memory"])
    data = run_aggregators_bench(opts, emit=lines.append)
    variants = {r["variant"] for r in data["memory"]}
    assert {"k_backward", "k_backward_stacked", f"{REFERENCE}@autogram"} <= variants
    assert all(r["extra_mib"] >= 0 and r["peak_mib"] > 0 for r in data["memory"])
    assert "Peak memory" in "\n".join(lines)


def test_bench_cli_quick_runs(capsys):
    rc = main(["bench", "aggregators", "--quick", "--methods", "mean", "--k", "2", "--n", "100",
               "--step-k", "2", "--workloads", "mlp", "--rounds", "1", "--densities", "1"])
    assert rc == 0
    assert "mlp, K = 2" in capsys.readouterr().out


def test_bench_cli_rejects_bad_values(capsys):
    assert main(["bench", "aggregators", "--k", "0"]) == 2
    assert "invalid --k='0'" in capsys.readouterr().err
    assert main(["bench", "aggregators", "--methods", "nope"]) == 2
    assert "'nope'" in capsys.readouterr().err
