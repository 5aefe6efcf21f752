"""Run folders and failures: nothing overwritten silently, one run per folder, every failure
one line with its documented exit code, skipped steps loud."""

from __future__ import annotations

import json
import os
import warnings

import pytest

from mtlkit.cli import main
from mtlkit.config import make_config
from mtlkit.errors import GradientError, OutputError
from mtlkit.rundir import RunLock, open_run_dir
from mtlkit.trainer import Trainer

SMALL = ["--benchmark-param", "n_train=64", "--benchmark-param", "n_val=32",
         "--benchmark-param", "n_test=32", "--batch-size", "16", "--probe", "none"]


def _train(out, *extra):
    return main(["train", "--epochs", "1", "--quiet", *SMALL, "--out", str(out), *extra])


def _one_line(capsys, needle):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err, err


def test_non_empty_out_refused_unless_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out) == 0
    first = (out / "results.json").read_bytes()
    capsys.readouterr()
    assert _train(out) == 5
    _one_line(capsys, "is not empty")
    assert (out / "results.json").read_bytes() == first
    (out / "notes.txt").write_text("mine")
    assert _train(out, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite removes only its outputs
    assert _train(out, "--resume") == 0
    assert not (out / ".lock").exists()  # released


@pytest.mark.parametrize("kind", ["file", "below_file", "unwritable"])
def test_unusable_out_is_one_line_exit_5(kind, tmp_path, capsys):
    target = tmp_path / "f"
    target.write_text("x")
    out = {"file": target, "below_file": target / "sub",
           "unwritable": tmp_path / "ro" / "run"}[kind]
    if kind == "unwritable":
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o500)
        if os.access(tmp_path / "ro", os.W_OK):
            pytest.skip("running as root: permissions do not bind")
    assert _train(out) == 5
    _one_line(capsys, "invalid --out")


def test_second_run_into_a_locked_folder_exits(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out).acquire():
        assert _train(out) == 5
        _one_line(capsys, "is in use by another mtlkit run")
    assert _train(out) == 0


def test_exactly_one_of_two_locks_wins(tmp_path):
    with open_run_dir(tmp_path / "d", outputs=()), pytest.raises(OutputError, match="in use"):
        open_run_dir(tmp_path / "d", outputs=())


def test_killed_run_is_reported_and_stale_temporaries_removed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("999999 host 1700000000\n")  # the lock file a kill leaves
    stale = out / ".results.json.abcd1234.mtlkit-tmp"
    stale.write_text("half")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with open_run_dir(out, outputs=(), resume=True):
            pass
    assert any("pid 999999" in str(w.message) and "interrupted" in str(w.message)
               for w in caught)
    assert not stale.exists()


def test_config_error_writes_nothing(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    assert main(["train", "--aggregator", "nope", *SMALL, "--out", str(out)]) == 2
    _one_line(capsys, "unknown aggregator 'nope'")
    assert not (tmp_path / "new").exists()


def _poisoned(trainer, every):
    real = trainer._task_losses
    calls = {"n": 0}

    def poisoned(outputs, targets):
        losses = real(outputs, targets)
        calls["n"] += 1
        if calls["n"] % every == 0:
            losses["right"] = losses["right"] * float("nan")
        return losses

    trainer._task_losses = poisoned


def _cfg(**extra):
    return make_config({"epochs": 1, "batch_size": 16, "probes": [], "nonfinite": "skip",
                        "benchmark_params": {"n_train": 64, "n_val": 32, "n_test": 32},
                        **extra})


def test_skipped_steps_warn_and_are_recorded(tmp_path):
    trainer = Trainer(_cfg(max_skipped_fraction=0.5), tmp_path, progress=False)
    _poisoned(trainer, every=4)  # 1 of the 4 steps
    with pytest.warns(UserWarning, match="epoch 1: skipped 1 of 4 steps"):
        results = trainer.fit()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["skipped_steps"] == 1 and saved["skipped_steps_per_epoch"] == [1]
    assert results["steps"] == 4


def test_too_many_skipped_steps_fail_with_exit_4(tmp_path):
    trainer = Trainer(_cfg(), tmp_path, progress=False)
    _poisoned(trainer, every=2)  # half the steps > 0.1
    with pytest.raises(GradientError, match="2 of 4 steps skipped") as exc:
        trainer.fit()
    assert exc.value.exit_code == 4
    assert not (tmp_path / "results.json").exists()


def test_plugin_allow_list_typo_names_the_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MTLKIT_LOAD_PLUGINS", "typo")
    assert _train(tmp_path / "run") == 2
    _one_line(capsys, "invalid MTLKIT_LOAD_PLUGINS='typo'")


def test_exit_codes_are_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for code in ("2 ", "3 ", "4 ", "5 ", "130"):
        assert f"  {code}" in text
