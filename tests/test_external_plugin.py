"""A third-party plugin distribution, really installed, is found by the registry and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "mtlkit-example-plugin"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """``pip install --no-deps --target`` the example plugin, as a user would install it."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(EXAMPLE)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")])
    return env


def _run(env, *args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_get_aggregator_finds_installed_plugin(installed_example):
    code = ("import torch, mtlkit; agg = mtlkit.get_aggregator('coordinate_median'); "
            "J = torch.tensor([[1., 5.], [2., -1.], [9., 0.]]); print(agg(J).tolist())")
    proc = _run(installed_example, "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [2.0, 0.0]


def test_cli_plugins_lists_installed_plugin(installed_example):
    proc = _run(installed_example, "-m", "mtlkit.cli", "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    assert plugins["example"]["distribution"] == "mtlkit-example-plugin"
    assert plugins["example"]["provides"] == {"aggregator": ["coordinate_median"]}
    text = _run(installed_example, "-m", "mtlkit.cli", "plugins").stdout
    assert "coordinate_median" in text and "mtlkit-example-plugin 0.1.0" in text


def test_train_with_installed_plugin(installed_example, tmp_path):
    proc = _run(installed_example, "-m", "mtlkit.cli", "train", "--aggregator",
                "coordinate_median", "--max-steps", "3", "--epochs", "1",
                "--benchmark-param", "n_train=1024", "--benchmark-param", "n_val=256",
                "--benchmark-param", "n_test=256", "--quiet", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["aggregator"] == "coordinate_median" and results["steps"] == 3


def test_plugin_absent_without_install():
    proc = subprocess.run([sys.executable, "-c", "import mtlkit; "
                           "mtlkit.get_aggregator('coordinate_median')"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "unknown aggregator 'coordinate_median'" in proc.stderr


def test_example_plugin_passes_property_kit_in_one_line(installed_example, tmp_path):
    """A third-party author's test file: one ``aggregator_suite`` line runs every check."""
    tests = EXAMPLE / "tests"
    proc = _run(installed_example, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "--rootdir", str(tmp_path), str(tests))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_property_kit_catches_a_false_claim(installed_example, tmp_path):
    """The same one-liner fails for an aggregator that claims a property it lacks."""
    test_file = tmp_path / "test_false_claim.py"
    test_file.write_text(
        "from mtlkit.testing.pytest_plugin import aggregator_suite\n"
        "from mtlkit_example_plugin import CoordinateMedian\n"
        "class ClaimsTooMuch(CoordinateMedian):\n"
        "    properties = CoordinateMedian.properties | {'non_conflicting'}\n"
        "test_claims = aggregator_suite(ClaimsTooMuch, max_examples=30)\n")
    proc = _run(installed_example, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "--rootdir", str(tmp_path), str(test_file))
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "non_conflicting" in proc.stdout and "failed" in proc.stdout
