"""Single-task baselines for a search's Δm (``stl = true`` in ``[search]``).

Δm compares each multi-task trial with single-task networks trained in the same setting. With
``stl = true`` the search trains them first, on the driver, once per distinct setting: the
trial's configuration with everything that defines the multi-task *method* or the run's
mechanics set aside (aggregator, mask and density, probes, gradient path, threads, seed).
:func:`mtlkit.stl.stl_baselines` (what ``mtlkit train --stl`` runs) trains each setting's
tasks alone, with the seed of the setting's first trial, into ``DIR/stl/<setting>/``; every
trial of that setting then reads ``baselines`` from there. Finished settings are reused (a
re-run or a resumed search trains nothing again). Trials whose ``[base]`` already names a
``baselines`` file keep it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import attrs

from mtlkit.config import make_config
from mtlkit.search.spec import SearchSpec
from mtlkit.stl import STL_METHOD_FIELDS, stl_baselines

STL_DIR = "stl"
# What the single-task networks do not depend on: the multi-task method and the mechanics.
_SET_ASIDE: dict[str, Any] = {
    **STL_METHOD_FIELDS, "mask_point": "trainable", "probe_params": {}, "probe_every": 1,
    "jacobian": "loop", "threads": None, "workers": 0, "checkpoint": True, "seed": 0,
}


def stl_setting(values: dict[str, Any]) -> str:
    """A short stable name for the single-task setting of a trial's TrainConfig values."""
    config = attrs.evolve(make_config(values, source="search trial"), **_SET_ASIDE)
    text = json.dumps(attrs.asdict(config), sort_keys=True, default=repr)
    return f"{config.benchmark}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def prepare_stl(spec: SearchSpec, out: Path, *, verbose: bool = True) -> dict[str, str]:
    """Train the missing single-task baselines; ``{setting: baselines path}``."""
    paths: dict[str, str] = {}
    for trial in spec.trials():
        if trial.values.get("baselines"):
            continue
        setting = stl_setting(trial.values)
        if setting in paths:
            continue
        folder = out / STL_DIR / setting
        path = folder / "stl_baselines.json"
        if not path.is_file():
            if verbose:
                print(f"single-task baselines for {setting} (seed {trial.values.get('seed', 0)}"
                      f"): training into {folder}", flush=True)
            config = make_config({**trial.values, "checkpoint": False}, source="search trial")
            stl_baselines(config, folder)
        paths[setting] = str(path)
    return paths


def with_baselines(trial: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    """A trial dict (``Trial.to_dict()``) whose values name its setting's baselines."""
    values = trial["values"]
    if values.get("baselines") or not paths:
        return trial
    return {**trial, "values": {**values, "baselines": paths[stl_setting(values)]}}
