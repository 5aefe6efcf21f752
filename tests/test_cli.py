"""The CLI contract: bad input gives one line naming the value, exit code 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mtlkit import __version__
from mtlkit.cli import main

SMALL = ["--benchmark-param", "n_train=512", "--benchmark-param", "n_val=256",
         "--benchmark-param", "n_test=256"]


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "mtlkit.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--aggregator", "nope"], "unknown aggregator 'nope'; available: "),
        (["--mask", "nope"], "unknown mask 'nope'"),
        (["--benchmark", "nope"], "unknown benchmark 'nope'"),
        (["--probe", "nope"], "unknown probe 'nope'"),
        (["--lr", "-0.1"], "invalid lr=-0.1: must be a finite number > 0"),
        (["--lr", "nan"], "invalid lr=nan"),
        (["--epochs", "0"], "invalid epochs=0: must be an integer >= 1"),
        (["--batch-size", "0"], "invalid batch_size=0"),
        (["--max-steps", "-3"], "invalid max_steps=-3"),
        (["--density", "0"], "invalid density=0.0: must be in (0, 1]"),
        (["--density", "1.5"], "invalid density=1.5: must be in (0, 1]"),
        (["--density", "-0.2"], "invalid density=-0.2"),
        (["--seed", "-1"], "invalid seed=-1"),
        (["--data-root", "/no/such/dir"], "invalid data_root='/no/such/dir': must be an "
                                          "existing directory"),
        (["--aggregator-param", "novalue"], "expected KEY=VALUE"),
        (["--aggregator-param", "c=0.4"], "aggregator 'mean' has no parameter 'c'"),
        (["--tasks", "left,middle"], "invalid tasks entry 'middle'"),
        (["--epochs", "x"], "argument --epochs: invalid int value: 'x'"),
        (["--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
    ],
)
def test_bad_input_one_line_exit_2(args, needle, tmp_path, capsys):
    try:
        code = main(["train", *args, *SMALL, "--out", str(tmp_path / "o")])
    except SystemExit as exc:  # argparse's own errors (types, choices) exit directly
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "results.json").exists()


def test_unknown_command_is_one_line(capsys):
    # (bad train flags are in test_bad_input_one_line_exit_2)
    with pytest.raises(SystemExit) as exc:
        main(["nosuchcommand"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err


def test_malformed_toml(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("epochs = = 3\n")
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"malformed TOML in {cfg}" in err and "line 1" in err and err.count("\n") == 1


def test_unknown_toml_key(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nepochz = 3\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "unknown key 'epochz'" in capsys.readouterr().err


def test_out_of_range_in_toml(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("lr = -1.0\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "invalid lr=-1.0" in capsys.readouterr().err


def test_debug_shows_traceback():
    proc = _cli("--debug", "train", "--lr", "-1")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_version():
    proc = _cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"mtlkit {__version__}"


def test_plugins_lists_bundled():
    proc = _cli("plugins")
    assert proc.returncode == 0
    for name in ("mean", "dense", "cosine", "classification", "multi_mnist", "lenet"):
        assert name in proc.stdout
    data = json.loads(_cli("plugins", "--json").stdout)
    names = {p["name"] for p in data["plugins"]}
    assert {"mean", "dense", "cosine", "classification", "multi_mnist"} <= names


def test_train_logs_plain_progress_lines_when_not_a_terminal(tmp_path):
    proc = _cli("train", "--max-steps", "2", "--epochs", "1", *SMALL, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    # a log file gets one plain line per epoch with elapsed time and ETA, no live-line escapes
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "epoch 1/1 step 2/2" in lines[0] and "ETA" in lines[0]
    assert "\r" not in proc.stderr and "\033" not in proc.stderr
    assert "left" in proc.stdout and "conflict incidence" in proc.stdout


def test_config_file_and_flag_override(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nepochs = 5\nmax_steps = 2\nseed = 3\n"
                   "[train.benchmark_params]\nn_train = 512\nn_val = 256\nn_test = 256\n")
    assert main(["train", "--config", str(cfg), "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "o")]) == 0
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["seed"] == 3 and results["protocol"]["epochs"] == 1 and results["steps"] == 2
