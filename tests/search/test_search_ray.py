"""Searches on real Ray: embedded local Ray, a two-node cluster, retries and --resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from search_helpers import mtlkit_command, run_mtlkit, write_spec

pytestmark = pytest.mark.ray

METRIC_COLUMNS = ("test.left.accuracy", "test.right.accuracy", "test.mean.accuracy",
                  "p_all_pct", "p_last_half_pct", "trainable_fraction", "delta_m")


def read_summary(out: Path) -> list[dict[str, str]]:
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def attempts(out: Path, trial_id: str) -> list[dict]:
    path = out / "trials" / trial_id / "attempts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def iterations(out: Path, trial_id: str) -> list[int]:
    """training_iteration of every result Tune recorded for a trial, in order."""
    lines = (out / "tune" / trial_id / "result.json").read_text().splitlines()
    return [json.loads(line)["training_iteration"] for line in lines if line.strip()]


def wait_for(predicate, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"driver exited ({proc.returncode}) before {what}: "
                                 f"{proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_embedded_local_ray_writes_summary_with_metrics(tmp_path, ray_tmpdir):
    # No --address: the command starts (and stops) its own Ray on all local CPUs.
    spec = write_spec(tmp_path, """
        [search]
        name = "local"
        [grid]
        aggregator = ["mean"]
        seed = [0, 1]
    """)
    out = tmp_path / "out"
    proc = run_mtlkit("search", str(spec), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = read_summary(out)
    assert len(rows) == 2
    assert sorted(r["seed"] for r in rows) == ["0", "1"]
    assert len({r["trial_id"] for r in rows}) == 2
    for row in rows:
        assert row["status"] == "done" and row["epochs"] == "2"
        for col in METRIC_COLUMNS:
            assert col in row
        assert 0.0 <= float(row["test.mean.accuracy"]) <= 1.0
        assert 0.0 <= float(row["p_all_pct"]) <= 100.0
        assert float(row["trainable_fraction"]) == 1.0
        assert (Path(row["out_dir"]) / "results.json").is_file()
    table = (out / "summary.md").read_text()
    assert "| aggregator | n |" in table and "| mean | 2 |" in table and " ± " in table


def test_trials_run_on_both_nodes_of_a_cluster(tmp_path, ray_cluster):
    spec = write_spec(tmp_path, """
        [search]
        name = "two_nodes"
        [grid]
        seed = [0, 1]
    """)
    out = tmp_path / "out"
    proc = run_mtlkit("search", str(spec), "--address", ray_cluster.address, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = read_summary(out)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"done"}
    node_ids = {node.node_id for node in ray_cluster.list_all_nodes()}
    used = {r["node_id"] for r in rows}
    assert used == node_ids and len(used) == 2


def test_killed_trial_worker_is_retried_from_its_checkpoint(tmp_path, ray_cluster):
    spec = write_spec(tmp_path, """
        [search]
        name = "worker_kill"
        max_failures = 2
        [grid]
        seed = [0]
    """, epochs=5, n_train=2048)
    out = tmp_path / "out"
    # RAY_ADDRESS instead of --address: the same attach path.
    proc = subprocess.Popen(mtlkit_command("search", str(spec), "--out", str(out)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "RAY_ADDRESS": ray_cluster.address})
    try:
        def two_epochs_recorded():
            # the driver has processed (and synced) two results, each with its checkpoint
            for path in (out / "tune").glob("*/result.json"):
                if len(path.read_text().split("\n")) > 2:
                    return path.parent.name
            return None

        trial_id = wait_for(two_epochs_recorded, 120, "two recorded epochs", proc)
        first = attempts(out, trial_id)[0]
        os.kill(first["pid"], signal.SIGKILL)  # the Ray worker running the trial
        output, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "retrying" in output
    tries = attempts(out, trial_id)
    assert len(tries) == 2
    assert tries[0]["resumed_from_epoch"] == 0 and tries[1]["pid"] != first["pid"]
    assert 2 <= tries[1]["resumed_from_epoch"] < 5   # from a checkpoint, not from scratch
    (row,) = read_summary(out)
    assert row["status"] == "done" and row["epochs"] == "5" and row["attempts"] == "2"
    assert row["node_id"] in {node.node_id for node in ray_cluster.list_all_nodes()}
    its = iterations(out, trial_id)
    assert its == [1, 2, 3, 4, 5]  # every epoch reported, none twice
    resumed = json.loads((Path(row["out_dir"]) / "results.json").read_text())
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4, 5]
    # the retried trial ends exactly where an uninterrupted run ends
    from mtlkit.config import make_config
    from mtlkit.trainer import Trainer

    values = {**resumed["config"], "checkpoint": False}
    straight = Trainer(make_config(values), None, progress=False).fit()
    assert straight["tasks"] == resumed["tasks"]
    assert straight["conflict"]["incidence_all"] == resumed["conflict"]["incidence_all"]


def test_killed_driver_resumes_without_losing_or_rerunning_trials(tmp_path, ray_cluster):
    epochs = 6  # long enough that the kill lands while the second trial is mid-way
    spec = write_spec(tmp_path, """
        [search]
        name = "driver_kill"
        max_concurrent = 1
        [grid]
        seed = [0, 1, 2]
    """, epochs=epochs, n_train=512)
    out = tmp_path / "out"
    cmd = ("search", str(spec), "--address", ray_cluster.address, "--out", str(out))
    proc = subprocess.Popen(mtlkit_command(*cmd), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        def one_done_one_running():
            # "running" = Tune's driver has recorded at least one result of it
            done = list((out / "trials").glob("*/results.json"))
            running = [p.parent.name for p in (out / "tune").glob("*/result.json")
                       if p.read_text().strip()
                       and not (out / "trials" / p.parent.name / "results.json").exists()]
            return running if done and running else None

        wait_for(one_done_one_running, 150, "a finished and a running trial", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / "summary.csv").exists()
    started = {p.parent.name for p in (out / "trials").glob("*/attempts.jsonl")}
    finished_before = {p.parent.name for p in (out / "trials").glob("*/results.json")}
    (interrupted,) = started - finished_before
    old_pid = attempts(out, interrupted)[-1]["pid"]
    # Ray ends the dead driver's trial workers; resume once they are gone.
    wait_for(lambda: not pid_alive(old_pid), 60, "the orphaned trial worker to exit")
    # A driver killed while Tune copied its experiment state leaves it truncated: mtlkit's
    # last consistent snapshot must stand in for it.
    (state,) = (out / "tune").glob("experiment_state-*.json")
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])

    resumed = run_mtlkit(*cmd, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{state.name} unreadable" in resumed.stdout
    rows = read_summary(out)
    assert len(rows) == 3 and len({r["trial_id"] for r in rows}) == 3
    assert sorted(r["seed"] for r in rows) == ["0", "1", "2"]
    assert {r["status"] for r in rows} == {"done"}
    assert {r["epochs"] for r in rows} == {str(epochs)}
    for trial_id in finished_before:          # not re-run: at most reloaded at its end
        _, *later = attempts(out, trial_id)
        assert all(a["resumed_from_epoch"] == a["epochs_total"] for a in later)
    tries = attempts(out, interrupted)        # continued from its checkpoint
    assert len(tries) == 2 and 1 <= tries[1]["resumed_from_epoch"] < epochs
    for row in rows:                          # every epoch trained once, none lost
        history = json.loads((Path(row["out_dir"]) / "results.json").read_text())["history"]
        assert [h["epoch"] for h in history] == list(range(1, epochs + 1)), row["trial_id"]
    # the interrupted trial ends exactly where an uninterrupted run ends
    from mtlkit.config import make_config
    from mtlkit.trainer import Trainer

    resumed_run = json.loads((out / "trials" / interrupted / "results.json").read_text())
    values = {**resumed_run["config"], "checkpoint": False}
    straight = Trainer(make_config(values), None, progress=False).fit()
    assert straight["tasks"] == resumed_run["tasks"]


def test_resume_refuses_a_changed_spec_and_a_fresh_run_refuses_a_used_folder(tmp_path,
                                                                              ray_cluster):
    from mtlkit.cli import main

    spec = write_spec(tmp_path, '[search]\nname = "x"\n[grid]\nseed = [0]\n', epochs=1)
    out = tmp_path / "out"
    assert main(["search", str(spec), "--out", str(out), "--quiet"]) == 0
    assert main(["search", str(spec), "--out", str(out), "--quiet"]) == 5  # not empty
    assert main(["search", str(spec), "--out", str(out), "--quiet", "--resume"]) == 0
    assert len(read_summary(out)) == 1
    spec.write_text(spec.read_text().replace("seed = [0]", "seed = [0, 1]"))
    assert main(["search", str(spec), "--out", str(out), "--quiet", "--resume"]) == 2


def test_gpu_share_on_a_cluster_without_gpus_is_refused_before_trials(tmp_path, ray_cluster,
                                                                     capsys):
    from mtlkit.cli import main

    spec = write_spec(tmp_path, '[search]\ngpus_per_trial = 0.25\n[grid]\nseed = [0]\n')
    out = tmp_path / "out"
    assert main(["search", str(spec), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "gpus_per_trial=0.25" in err and "has 0 GPUs" in err
    assert not out.exists()


def test_optuna_search_with_asha_samples_the_space(tmp_path, ray_cluster):
    pytest.importorskip("optuna")
    from mtlkit.search import load_spec
    from mtlkit.search.report import write_reports
    from mtlkit.search.runner import run_search

    path = write_spec(tmp_path, """
        [search]
        name = "hpo"
        search_alg = "optuna"
        num_samples = 3
        max_concurrent = 2
        scheduler = "asha"
        [search.asha]
        grace_period = 1
        [space]
        lr = { loguniform = [1e-4, 1e-2] }
        "benchmark_params.n_val" = { choice = [64, 128] }
    """, epochs=2)
    spec = load_spec(path)
    out = tmp_path / "out"
    results = run_search(spec, out, verbose=False)
    rows = write_reports(results, spec, out)["rows"]
    assert len(rows) == 3 and not [r for r in rows if r["status"] == "error"]
    lrs = [r["lr"] for r in rows]
    assert all(1e-4 <= lr <= 1e-2 for lr in lrs) and len(set(lrs)) == 3
    assert {r["benchmark_params.n_val"] for r in rows} <= {64, 128}
