"""Solver-backed aggregators hold NumPy/SciPy's BLAS pools to one thread while they solve
(torch's own threads keep the cores; no oversubscription), and restore them afterwards."""

from __future__ import annotations

import importlib

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

import mtlkit
from tests.aggregators.helpers import make_J

SOLVER_METHODS = ["mgda", "mgda_ub", "upgrad", "cagrad", "nash_mtl", "fairgrad", "gradops",
                  "imtl_g", "aligned_mtl", "pcgrad", "gradvac"]


def blas_threads() -> dict[str, int]:
    return {i["filepath"]: int(i["num_threads"]) for i in threadpool_info()
            if i["user_api"] == "blas"}


@pytest.mark.parametrize("name", SOLVER_METHODS)
def test_solver_runs_with_single_threaded_blas(name, monkeypatch):
    a = mtlkit.get_aggregator(name)
    module = importlib.import_module(type(a).weights.__module__)  # where weights() lives
    seen: list[dict[str, int]] = []
    for helper in ("as_normalized_numpy", "as_normalized_eigh"):
        original = getattr(module, helper, None)
        if original is None:
            continue

        def recording(G, _original=original):
            seen.append(blas_threads())
            return _original(G)

        monkeypatch.setattr(module, helper, recording)
    J = make_J(5, 40, seed=1)
    # pools wider than one thread outside the solve, so that the check can fail on any machine
    # (a library may refuse more threads, e.g. one built single-threaded: only the pools that
    # did widen can show the limit)
    with threadpool_limits(limits=2, user_api="blas"):
        wide = {path for path, n in blas_threads().items() if n == 2}
        assert wide
        a(J, generator=torch.Generator().manual_seed(0))
        assert {path for path, n in blas_threads().items() if n == 2} == wide  # restored
    assert seen and all(s[path] == 1 for s in seen for path in wide), seen
