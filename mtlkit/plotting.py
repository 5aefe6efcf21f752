"""Charts of conflict measurements from run folders (``mtlkit plot``), as PNG files.

* :func:`plot_conflict`: conflict incidence (the sparse-training paper's p%, probe ``cosine``)
  over training, one line per group of runs (e.g. dense vs PSN on one chart; seeds of the same
  configuration are averaged), read from each run's ``steps.csv`` (``cosine.incidence`` on the
  full shared gradient, solid; ``cosine.incidence_trainable`` on the trainable coordinates,
  dashed, drawn when the mask is sparse). With two tasks the per-step value is 0 or 1, so the
  curve is a moving average over ``window`` observed steps.
* :func:`plot_layer_profile`: the per-layer conflict profile of probe ``layer_conflict``
  (Recon's S-conflict counts per layer and the mean per-layer cosine), read from
  ``results.json`` at ``probes.layer_conflict`` = ``{"layers": [...], "s_conflict_counts":
  {layer: int}, "mean_cosine": {layer: float}, "threshold": S}``; runs side by side.

matplotlib is an optional dependency (the ``plot`` extra); it is imported only here.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtlkit.errors import ConfigError, MtlkitError

LAYER_PROBE = "layer_conflict"


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend; MtlkitError without the plot extra."""
    try:
        import matplotlib
    except ImportError:
        raise MtlkitError("mtlkit plot needs matplotlib: pip install 'mtlkit[plot]'") from None
    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def load_results(run: str | Path) -> dict[str, Any]:
    path = Path(run)
    path = path / "results.json" if path.is_dir() else path
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"invalid run {str(run)!r}: no results.json there") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"malformed {path}: {exc}") from None


def read_steps(run: str | Path) -> list[dict[str, str]]:
    path = Path(run) / "steps.csv"
    if not path.is_file():
        raise ConfigError(f"invalid run {str(run)!r}: no steps.csv (run with a probe, e.g. "
                          "--probe cosine)")
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def run_label(results: dict[str, Any]) -> str:
    """``<aggregator> + <mask>[ d=<fraction>]``: what distinguishes runs in a chart."""
    mask = results.get("mask", "dense")
    frac = results.get("trainable_fraction")
    dens = f" ({frac:.0%} trainable)" if mask != "dense" and frac is not None else ""
    return f"{results.get('aggregator', '?')} + {mask}{dens}"


def _series(rows: list[dict[str, str]], column: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        v = row.get(column, "")
        if v not in ("", None):
            xs.append(float(row["step"]))
            ys.append(float(v))
    return xs, ys


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (shorter at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def conflict_curves(runs: Sequence[str | Path], labels: Sequence[str] | None = None,
                    window: int | None = None) -> dict[str, dict[str, Any]]:
    """``{label: {"step": [...], "full": [...], "trainable": [...] or None, "runs": n}}``,
    averaging runs that share a label (seeds) step by step over their common steps."""
    if labels is not None and len(labels) != len(runs):
        raise ConfigError(f"invalid --label: {len(labels)} labels for {len(runs)} runs")
    groups: dict[str, list[tuple[dict[str, float], dict[str, float] | None]]] = {}
    for i, run in enumerate(runs):
        results = load_results(run)
        rows = read_steps(run)
        xs, full = _series(rows, "cosine.incidence")
        if not xs:
            raise ConfigError(f"invalid run {str(run)!r}: steps.csv has no cosine.incidence "
                              "column (run with --probe cosine)")
        _, trainable = _series(rows, "cosine.incidence_trainable")
        sparse = results.get("mask", "dense") != "dense" and trainable
        label = labels[i] if labels else run_label(results)
        groups.setdefault(label, []).append(
            (dict(zip(xs, full)), dict(zip(xs, trainable)) if sparse else None))
    curves = {}
    for label, members in groups.items():
        steps = sorted(set.intersection(*(set(f) for f, _ in members)))
        w = window or max(1, len(steps) // 20)
        full = moving_average([sum(f[s] for f, _ in members) / len(members) for s in steps], w)
        trainable = None
        if all(t is not None for _, t in members):
            trainable = moving_average(
                [sum(t[s] for _, t in members) / len(members) for s in steps], w)  # type: ignore[index]
        curves[label] = {"step": steps, "full": full, "trainable": trainable,
                         "runs": len(members), "window": w}
    return curves


def plot_conflict(runs: Sequence[str | Path], out: str | Path, *,
                  labels: Sequence[str] | None = None, window: int | None = None,
                  title: str | None = None) -> Path:
    """Conflict incidence over training for several runs on one chart; returns the PNG path."""
    curves = conflict_curves(runs, labels, window)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (label, c) in enumerate(curves.items()):
        color = f"C{i}"
        seeds = f", {c['runs']} runs" if c["runs"] > 1 else ""
        ax.plot(c["step"], [100 * v for v in c["full"]], color=color,
                label=f"{label}{seeds}: full gradient")
        if c["trainable"] is not None:
            ax.plot(c["step"], [100 * v for v in c["trainable"]], color=color, linestyle="--",
                    label=f"{label}: trainable coords")
    windows = sorted({c["window"] for c in curves.values()})
    ax.set_xlabel("training step")
    ax.set_ylabel("conflict incidence p% (moving average)")
    ax.set_title(title or f"Gradient-conflict incidence (pairs with cos < 0), window "
                          f"{', '.join(map(str, windows))} observed steps")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, plt, out)


def layer_profile(run: str | Path, results: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``layer_conflict`` probe summary of a run (its ``results`` if already loaded),
    validated."""
    results = load_results(run) if results is None else results
    summary = (results.get("probes") or {}).get(LAYER_PROBE)
    if not summary:
        raise ConfigError(f"invalid run {str(run)!r}: results.json has no "
                          f"probes.{LAYER_PROBE} (run with --probe {LAYER_PROBE})")
    missing = [k for k in ("layers", "s_conflict_counts", "mean_cosine") if k not in summary]
    if missing:
        raise ConfigError(f"malformed probes.{LAYER_PROBE} in {run}: missing "
                          f"{', '.join(missing)}")
    return summary


def plot_layer_profile(runs: Sequence[str | Path], out: str | Path, *,
                       labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Per-layer S-conflict counts (top) and mean cosines (bottom), runs side by side."""
    if labels is not None and len(labels) != len(runs):
        raise ConfigError(f"invalid --label: {len(labels)} labels for {len(runs)} runs")
    loaded = [load_results(r) for r in runs]
    profiles = [layer_profile(r, results) for r, results in zip(runs, loaded)]
    names = list(labels) if labels else [run_label(results) for results in loaded]
    layers: list[str] = []
    for p in profiles:  # model order, first run first
        layers.extend(layer for layer in p["layers"] if layer not in layers)
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6, 0.6 * len(layers) + 2), 6),
                                      sharex=True)
    width = 0.8 / len(profiles)
    for i, (p, name) in enumerate(zip(profiles, names)):
        xs = [j + (i - (len(profiles) - 1) / 2) * width for j in range(len(layers))]
        counts = [p["s_conflict_counts"].get(layer, 0) for layer in layers]
        cosines = [p["mean_cosine"].get(layer, math.nan) for layer in layers]
        top.bar(xs, counts, width, label=name, color=f"C{i}")
        bottom.bar(xs, cosines, width, color=f"C{i}")
    thresholds = sorted({str(p.get("threshold")) for p in profiles})
    top.set_ylabel(f"S-conflict count (cos < {', '.join(thresholds)})")
    bottom.set_ylabel("mean cosine")
    bottom.axhline(0, color="black", linewidth=0.8)
    bottom.set_xticks(range(len(layers)))
    bottom.set_xticklabels(layers, rotation=45, ha="right", fontsize=8)
    top.set_title(title or "Per-layer gradient conflict (Recon)")
    top.legend(fontsize=8)
    for ax in (top, bottom):
        ax.grid(alpha=0.3, axis="y")
    return save_png(fig, plt, out)


def save_png(fig, plt, out: str | Path) -> Path:
    """Lay out, write ``out`` (a .png) and close ``fig``."""
    path = Path(out)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"invalid --out {str(out)!r}: must be a .png file")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
