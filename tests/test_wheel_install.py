"""A plain install of the wheel runs every bundled aggregator.

Builds the wheel (``pip wheel --no-deps``), creates a bare virtual environment (no
``--system-site-packages``), installs the wheel with its base dependencies only (no extras; pip
resolves ``torch==2.13.0`` through ``-c constraints.txt`` like every install of this project),
checks that the optional test-only solvers (cvxpy) are absent, and calls every aggregator that
the installed wheel registers once on a random Jacobian.

It downloads and installs the full base dependency set (torch, Ray, ...: about a minute and
1.5 GB on a fast link), so it runs only when ``MTLKIT_WHEEL_TEST=1`` (CI sets it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("MTLKIT_WHEEL_TEST") != "1",
                       reason="installs the wheel and its base dependencies into a fresh venv; "
                              "set MTLKIT_WHEEL_TEST=1 to run"),
]

#: Constructor arguments for the aggregators that need to know the task count up front.
K = 4
PARAMS = {"uw": {"num_tasks": K}, "constant": {"weights": [1.0] * K}}

SCRIPT = textwrap.dedent("""
    import importlib.util, json, sys
    import torch
    import mtlkit
    from mtlkit.plugins import get_plugin_manager
    from mtlkit.testing.properties import make_context

    assert importlib.util.find_spec("cvxpy") is None, "cvxpy must not come with a base install"
    K, params = int(sys.argv[1]), json.loads(sys.argv[2])
    J = torch.randn(K, 300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    J[1] -= 1.5 * J[0]  # one conflicting pair, so that the solvers have work to do
    names = sorted(get_plugin_manager().names("aggregator"))
    for name in names:
        agg = mtlkit.get_aggregator(name, **params.get(name, {}))
        d = agg(J, **make_context(K))
        assert d.shape == (300,) and bool(torch.isfinite(d).all()), name
        print("ok", name)
    print("ran", len(names))
""")


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_wheel_runs_every_bundled_aggregator_with_base_dependencies(tmp_path):
    import json

    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(ROOT)])
    (wheel,) = wheels.glob("mtlkit-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])  # bare: no system site-packages
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-c", str(ROOT / "constraints.txt"), str(wheel)], cwd=tmp_path)
    # run outside the checkout, so that nothing is imported from the source tree
    out = run([str(python), "-c", SCRIPT, str(K), json.dumps(PARAMS)], cwd=tmp_path).stdout
    ran = [line.split()[1] for line in out.splitlines() if line.startswith("ok ")]
    bundled = {"mean", "sum", "rlw", "mgda", "mgda_ub", "pcgrad", "cagrad", "gradops",
               "nash_mtl", "imtl_g", "graddrop", "gradvac", "aligned_mtl", "upgrad", "fairgrad",
               "uw", "dwa", "famo"}
    assert bundled <= set(ran), sorted(bundled - set(ran))
