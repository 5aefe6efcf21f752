"""Checkpoints are plain data: a crafted file runs nothing; every bundled stateful aggregator
and probe resumes to exactly the run that was never interrupted; a different config is refused."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from mtlkit.cli import main
from mtlkit.config import make_config
from mtlkit.errors import ConfigError, DataError, PluginError
from mtlkit.results import load_checkpoint
from mtlkit.statedict import decode, encode
from mtlkit.trainer import Trainer

SMALL = {"n_train": 64, "n_val": 32, "n_test": 32}
PROBES = ["cosine", "grad_stats", "layer_conflict"]


def _config(aggregator: str, epochs: int, **extra):
    return make_config({"aggregator": aggregator, "epochs": epochs, "batch_size": 16,
                        "benchmark_params": SMALL, "probes": PROBES, "seed": 1, **extra})


# every bundled stateful aggregator
STATEFUL = ["famo", "dwa", "gradvac", "nash_mtl", "uw", "rlw"]


@pytest.mark.parametrize("aggregator", STATEFUL)
def test_resume_equals_uninterrupted(aggregator, tmp_path):
    """Train 2 epochs in one go, and kill a run after epoch 1 then resume it in a new Trainer
    (a new process in all but name): every metric, loss, probe record and parameter is
    bit-identical, which needs the aggregator's and probes' state (and UW's parameters inside
    the optimizer)."""
    whole = Trainer(_config(aggregator, 2), tmp_path / "whole", progress=False)
    done = whole.fit()

    def killed(record, trainer):
        raise KeyboardInterrupt

    cut = Trainer(_config(aggregator, 2), tmp_path / "cut", progress=False,
                  on_epoch_end=killed)
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    again = Trainer(_config(aggregator, 2), tmp_path / "cut", progress=False)
    resumed = again.fit(resume=True)
    assert resumed["history"] == done["history"]
    assert resumed["probes"] == done["probes"]
    assert again.step_rows == whole.step_rows
    for (name, p), (_, q) in zip(whole.model.named_parameters(), again.model.named_parameters()):
        assert torch.equal(p, q), name
    live = {id(p) for g in again.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in live for p in again.aggregator.parameters())  # UW: the same tensors
    for a, b in zip(whole.aggregator.parameters(), again.aggregator.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_is_plain_data(tmp_path):
    Trainer(_config("famo", 1), tmp_path, progress=False).fit()
    raw = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # would raise otherwise
    assert raw["config"]["aggregator"] == "famo" and raw["mtlkit_version"]


class _Payload:
    def __reduce__(self):
        marker = os.environ["MTLKIT_TEST_MARKER"]
        return (os.system, (f"touch {marker}",))


@pytest.mark.parametrize("kind", ["pickle", "torch_save", "truncated", "text", "other_dict"])
def test_crafted_or_broken_checkpoint_is_refused(kind, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("MTLKIT_TEST_MARKER", str(marker))
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--batch-size", "16", "--quiet", "--probe", "none",
                 *[a for k, v in SMALL.items() for a in ("--benchmark-param", f"{k}={v}")],
                 "--out", str(out)]) == 0
    path = out / "checkpoint.pt"
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"format": "x", "model": _Payload()}))
    elif kind == "torch_save":
        state = torch.load(path, weights_only=True)
        state["aggregator"] = _Payload()
        torch.save(state, path)
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "text":
        path.write_text("not a checkpoint")
    else:
        torch.save({"weights": torch.zeros(2)}, path)
    capsys.readouterr()
    code = main(["train", "--epochs", "2", "--batch-size", "16", "--quiet", "--probe", "none",
                 *[a for k, v in SMALL.items() for a in ("--benchmark-param", f"{k}={v}")],
                 "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert not marker.exists()  # nothing ran
    assert code == 3
    assert err.count("\n") == 1 and "not a valid mtlkit checkpoint" in err, err
    with pytest.raises(DataError):
        load_checkpoint(path)


def test_resume_with_other_config_lists_the_keys(tmp_path):
    Trainer(_config("famo", 1), tmp_path, progress=False).fit()
    other = Trainer(_config("dwa", 2, seed=2), tmp_path, progress=False)
    with pytest.raises(ConfigError) as exc:
        other.fit(resume=True)
    msg = str(exc.value)
    assert "aggregator: 'famo' -> 'dwa'" in msg and "seed: 1 -> 2" in msg
    assert "epochs" not in msg.split("(")[1].split(")")[0]  # epochs may change


def test_encode_round_trip_and_refusal():
    import numpy as np

    gen = torch.Generator().manual_seed(3)
    value = {"t": torch.ones(2), "p": torch.zeros(3, requires_grad=True), "a": np.eye(2),
             "g": gen, "tup": (1, 2.5, "x"), 4: [None, True], "__odd": 1}
    back = decode(torch.load(_saved(encode(value)), weights_only=True))
    assert torch.equal(back["t"], value["t"]) and back["p"].requires_grad
    assert np.array_equal(back["a"], value["a"]) and back["tup"] == (1, 2.5, "x")
    assert back[4] == [None, True] and back["__odd"] == 1
    assert torch.equal(torch.rand(3, generator=back["g"]), torch.rand(3, generator=gen))
    with pytest.raises(PluginError, match=r"cannot checkpoint x\.f: a function"):
        encode(lambda: 0, "x.f")


def _saved(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_results_record_skipped_steps(tmp_path):
    results = Trainer(_config("mean", 1), tmp_path, progress=False).fit()
    assert results["skipped_steps"] == 0 and results["skipped_steps_per_epoch"] == [0]
    assert results["nonfinite_metrics"] == []
    assert json.loads((tmp_path / "results.json").read_text())["skipped_steps"] == 0
