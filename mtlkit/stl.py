"""Single-task baselines for Δm: every task of a configuration trained alone.

Used by ``mtlkit train --stl`` and by searches with ``stl = true`` (``mtlkit.search.stl``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtlkit.results import write_json

#: What a single-task network sets aside of a multi-task configuration: the method. No mask
#: either: the papers' STL rows are dense single-task networks.
STL_METHOD_FIELDS: dict[str, Any] = {
    "aggregator": "mean", "aggregator_params": {}, "mask": "dense", "mask_params": {},
    "density": None, "k": None, "probes": [], "baselines": None,
}

#: metrics left out of single-task baselines: the test loss is the training objective, not an
#: evaluation metric of any paper's delta_m
_NOT_BASELINE_METRICS = frozenset({"loss"})


def stl_baselines(config, out: Path, progress=False) -> dict[str, dict[str, float]]:
    """Train every task of ``config`` alone and return ``{task: {metric: test value}}``.

    Each task gets the benchmark's model with only its head, the same protocol (epochs, lr,
    batch size, optimizer, seed), equal weighting of its single loss and **no mask**. Runs go
    to ``out/stl/<task>/``; the baselines to ``out/stl_baselines.json``, which
    ``--baselines`` reads.
    """
    import attrs

    from mtlkit.plugins import get_plugin_manager
    from mtlkit.trainer import Trainer

    bench_params = {"seed": config.seed, "data_root": config.data_root,
                    **config.benchmark_params}
    bench = get_plugin_manager().create("benchmark", config.benchmark, **bench_params)
    tasks = config.tasks or [t.name for t in bench.tasks]
    baselines: dict[str, dict[str, float]] = {}
    for task in tasks:
        cfg = attrs.evolve(config, tasks=[task], **STL_METHOD_FIELDS)
        results = Trainer(cfg, out / "stl" / task, progress=progress).fit()
        baselines[task] = {m: v for m, v in results["tasks"][task].items()
                           if m not in _NOT_BASELINE_METRICS}
    write_json(out / "stl_baselines.json", baselines)
    return baselines
