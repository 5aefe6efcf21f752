"""Helpers for the search tests (a module, not conftest, so tests can import them)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TINY_BASE = """
[base]
benchmark = "multi_mnist"
epochs = {epochs}
batch_size = 64
benchmark_params = {{ n_train = {n_train}, n_val = 128, n_test = 128 }}
"""


def write_spec(folder: Path, body: str, *, epochs: int = 2, n_train: int = 256,
               name: str = "spec.toml") -> Path:
    """A spec file: ``body`` plus a tiny [base] unless the body has its own."""
    text = textwrap.dedent(body)
    if "[base]" not in text:
        text += TINY_BASE.format(epochs=epochs, n_train=n_train)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def mtlkit_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mtlkit.cli", *args]


def run_mtlkit(*args: str, timeout: float = 240, env: dict | None = None
               ) -> subprocess.CompletedProcess:
    return subprocess.run(mtlkit_command(*args), capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
