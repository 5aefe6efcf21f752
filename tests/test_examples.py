"""Every script in examples/ runs as a user would run it (a fresh working directory)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))
#: what each example imports beyond the base install
NEEDS = {"lightning_module.py": ["lightning", "sklearn"], "own_loop.py": ["sklearn"],
         "own_model_trainer.py": ["sklearn"]}


def test_examples_are_found():
    assert {p.name for p in EXAMPLES} >= {"own_loop.py", "own_model_trainer.py", "amp.py",
                                          "lightning_module.py"}


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    for module in NEEDS.get(script.name, []):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{script.name} needs {module} (an optional extra), not installed")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), "an example says what it did"
