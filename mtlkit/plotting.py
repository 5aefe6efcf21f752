"""Print-ready charts of conflict measurements from run folders (``mtlkit plot``).

* :func:`plot_conflict`: conflict incidence (the sparse-training paper's p%, probe ``cosine``)
  over training, one line per group of runs (e.g. dense vs PSN on one chart): runs sharing a
  label (seeds) give the mean line and a ± one-standard-deviation band; a single run says
  ``n = 1`` and has no band (a "± 0" would claim a spread that was never measured). Read from
  each run's ``steps.csv`` (``cosine.incidence`` on the full shared gradient, solid;
  ``cosine.incidence_trainable`` on the trainable coordinates, dashed, for sparse masks). With
  two tasks the per-step value is 0 or 1, so each run is smoothed by a moving average over
  ``window`` observed steps before the mean and spread over runs are taken.
* :func:`plot_layer_profile`: the per-layer profile of probe ``layer_conflict`` (Recon's
  S-conflict counts and mean per-layer cosines), runs side by side, from ``results.json`` at
  ``probes.layer_conflict``. Every layer of every run is on the axis: a layer a run does not
  share (Recon branched it into task-specific copies, so the probe has nothing to score there)
  is marked "not shared" instead of being drawn as an empty bar that reads as "no conflict".
* :func:`plot_conflict_depth`: conflict over depth, the share of observed steps in which a
  layer's task gradients conflict (cos < S), mean ± std over the runs of each label (e.g. dense
  vs PSN densities, seeds averaged), layers in model order from input to output.

Every figure is written in the requested formats (``png`` at :data:`DPI` dots per inch, ``pdf``
with embedded TrueType fonts, ``svg``), uses the Okabe-Ito colour-blind-safe palette (Okabe &
Ito 2008, "Color Universal Design"), keeps legends outside the axes (below them) so they never
cover data, and has axis titles in words. The figure size in inches is exact (constrained
layout, no tight bounding box), so a PNG is ``width x height x DPI`` pixels.

matplotlib is an optional dependency (the ``plot`` extra); it is imported only here.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtlkit.errors import ConfigError, MtlkitError

LAYER_PROBE = "layer_conflict"
#: Okabe-Ito: distinguishable under the common colour-vision deficiencies, and in greyscale
#: by the line styles and markers the charts add
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
FORMATS = ("png", "pdf", "svg")
#: formats written when a caller names none (``save_png`` callers such as the search report)
DEFAULT_FORMATS = FORMATS
#: raster resolution: journals ask for >= 300 dpi line art
DPI = 300


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend with the print style; MtlkitError
    without the plot extra."""
    try:
        import matplotlib
    except ImportError:
        raise MtlkitError("mtlkit plot needs matplotlib: pip install 'mtlkit[plot]'") from None
    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt
    from cycler import cycler

    plt.rcParams.update({
        "axes.prop_cycle": cycler(color=PALETTE),
        "savefig.dpi": DPI, "figure.dpi": 100, "font.size": 9, "axes.titlesize": 10,
        "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
        "ytick.labelsize": 8, "pdf.fonttype": 42, "ps.fonttype": 42,  # editable text
        "svg.fonttype": "path", "axes.spines.top": False, "axes.spines.right": False,
    })
    return plt


def parse_formats(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"png,pdf"`` -> ("png", "pdf"); one clear error for an unknown format."""
    if text is None:
        return DEFAULT_FORMATS
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    items = [t for t in items if t]
    bad = [t for t in items if t not in FORMATS]
    if bad or not items:
        raise ConfigError(f"invalid --format {text!r}: must be a comma-separated subset of "
                          f"{','.join(FORMATS)}")
    return tuple(dict.fromkeys(items))


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
    """``<aggregator> + <mask>[ (<fraction> trainable)]``: what distinguishes runs in a chart."""
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


def _mean_std(columns: list[list[float]]) -> tuple[list[float], list[float] | None]:
    """Pointwise mean and sample std over runs (None for one run: no spread measured)."""
    mean = [statistics.fmean(c) for c in zip(*columns)]
    std = [statistics.stdev(c) for c in zip(*columns)] if len(columns) > 1 else None
    return mean, std


def conflict_curves(runs: Sequence[str | Path], labels: Sequence[str] | None = None,
                    window: int | None = None) -> dict[str, dict[str, Any]]:
    """``{label: {"step", "full", "full_std", "trainable", "trainable_std", "runs",
    "window"}}``: runs sharing a label (seeds) over their common steps, each smoothed, then
    the pointwise mean and std (``*_std`` None for one run; ``trainable`` None for dense)."""
    if labels is not None and len(labels) != len(runs):
        raise ConfigError(f"invalid --label: {len(labels)} labels for {len(runs)} runs")
    groups: dict[str, list[tuple[dict[float, float], dict[float, float] | None]]] = {}
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
        full, full_std = _mean_std([moving_average([f[s] for s in steps], w)
                                    for f, _ in members])
        trainable = trainable_std = None
        if all(t is not None for _, t in members):
            trainable, trainable_std = _mean_std(
                [moving_average([t[s] for s in steps], w) for _, t in members])  # type: ignore[index]
        curves[label] = {"step": steps, "full": full, "full_std": full_std,
                         "trainable": trainable, "trainable_std": trainable_std,
                         "runs": len(members), "window": w}
    return curves


def _n(runs: int) -> str:
    return f"mean ± std, n = {runs} seeds" if runs > 1 else "n = 1"


def plot_conflict(runs: Sequence[str | Path], out: str | Path, *,
                  labels: Sequence[str] | None = None, window: int | None = None,
                  title: str | None = None, formats: Sequence[str] | None = None) -> Path:
    """Conflict incidence over training, mean ± std band over each label's runs; returns the
    first written file (all of ``formats`` are written next to it)."""
    curves = conflict_curves(runs, labels, window)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    for i, (label, c) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        for key, style, what in (("full", "-", "full gradient"),
                                 ("trainable", "--", "trainable coordinates")):
            if c[key] is None:
                continue
            ys = [100 * v for v in c[key]]
            ax.plot(c["step"], ys, color=color, linestyle=style, linewidth=1.4,
                    label=f"{label}, {what} ({_n(c['runs'])})")
            if c[f"{key}_std"] is not None:
                sd = [100 * v for v in c[f"{key}_std"]]
                ax.fill_between(c["step"], [y - s for y, s in zip(ys, sd)],
                                [y + s for y, s in zip(ys, sd)], color=color,
                                alpha=0.15 if key == "full" else 0.08, linewidth=0)
    windows = ", ".join(map(str, sorted({c["window"] for c in curves.values()})))
    ax.set_xlabel(f"Training step (moving average over {windows} observed steps)")
    ax.set_ylabel("Conflict incidence p (%)")
    ax.set_title(title or "Gradient-conflict incidence (task pairs with cos < 0)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    return _first(save_figure(fig, plt, out, formats))


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


def _union_layers(profiles: Sequence[dict[str, Any]]) -> list[str]:
    layers: list[str] = []
    for p in profiles:  # model order, first run first
        layers.extend(layer for layer in p["layers"] if layer not in layers)
    return layers


def plot_layer_profile(runs: Sequence[str | Path], out: str | Path, *,
                       labels: Sequence[str] | None = None, title: str | None = None,
                       formats: Sequence[str] | None = None) -> Path:
    """Per-layer S-conflict counts (top) and mean cosines (bottom), runs side by side."""
    if labels is not None and len(labels) != len(runs):
        raise ConfigError(f"invalid --label: {len(labels)} labels for {len(runs)} runs")
    loaded = [load_results(r) for r in runs]
    profiles = [layer_profile(r, results) for r, results in zip(runs, loaded)]
    names = list(labels) if labels else [run_label(results) for results in loaded]
    layers = _union_layers(profiles)
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 0.45 * len(layers) + 2), 6),
                                      sharex=True, layout="constrained")
    width = 0.8 / len(profiles)
    for i, (p, name) in enumerate(zip(profiles, names)):
        color = PALETTE[i % len(PALETTE)]
        xs = [j + (i - (len(profiles) - 1) / 2) * width for j in range(len(layers))]
        shared = [layer in p["layers"] for layer in layers]
        counts = [p["s_conflict_counts"].get(layer, 0) if s else math.nan
                  for layer, s in zip(layers, shared)]
        cosines = [p["mean_cosine"].get(layer, math.nan) if s else math.nan
                   for layer, s in zip(layers, shared)]
        top.bar(xs, counts, width, label=name, color=color)
        bottom.bar(xs, cosines, width, color=color)
        for x, s in zip(xs, shared):  # a layer this run does not share: say so, no empty bar
            if not s:
                top.annotate("not shared", (x, 0), rotation=90, ha="center", va="bottom",
                             fontsize=6, color=color)
    thresholds = sorted({str(p.get("threshold")) for p in profiles})
    top.set_ylabel(f"S-conflict count (cos < {', '.join(thresholds)})")
    bottom.set_ylabel("Mean task-gradient cosine")
    bottom.set_xlabel("Shared layer (input to output)")
    bottom.axhline(0, color="black", linewidth=0.8)
    bottom.set_xticks(range(len(layers)))
    bottom.set_xticklabels(layers, rotation=45, ha="right", fontsize=7)
    top.set_title(title or "Per-layer gradient conflict (Recon)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3, axis="y")
    return _first(save_figure(fig, plt, out, formats))


def depth_profiles(runs: Sequence[str | Path], labels: Sequence[str] | None = None
                   ) -> dict[str, dict[str, Any]]:
    """``{label: {"layers", "rate", "rate_std", "cosine", "cosine_std", "runs"}}``: per layer,
    the share of observed steps x task pairs with cos < S (%), and the mean cosine, mean and
    std over the label's runs (std None for one run)."""
    if labels is not None and len(labels) != len(runs):
        raise ConfigError(f"invalid --label: {len(labels)} labels for {len(runs)} runs")
    groups: dict[str, list[dict[str, Any]]] = {}
    for i, run in enumerate(runs):
        results = load_results(run)
        groups.setdefault(labels[i] if labels else run_label(results), []).append(
            layer_profile(run, results))
    out = {}
    for label, profiles in groups.items():
        layers = _union_layers(profiles)
        rates, cosines = [], []
        for p in profiles:
            pairs = (p.get("observed_steps") or 0) * (p.get("pairs_per_step") or 0)
            if pairs <= 0:
                raise ConfigError(f"malformed probes.{LAYER_PROBE} of a {label!r} run: needs "
                                  "observed_steps and pairs_per_step > 0")
            rates.append([100 * p["s_conflict_counts"].get(layer, math.nan) / pairs
                          for layer in layers])
            cosines.append([p["mean_cosine"].get(layer, math.nan) for layer in layers])
        rate, rate_std = _mean_std(rates)
        cos, cos_std = _mean_std(cosines)
        out[label] = {"layers": layers, "rate": rate, "rate_std": rate_std, "cosine": cos,
                      "cosine_std": cos_std, "runs": len(profiles),
                      "threshold": profiles[0].get("threshold")}
    return out


def plot_conflict_depth(runs: Sequence[str | Path], out: str | Path, *,
                        labels: Sequence[str] | None = None, title: str | None = None,
                        formats: Sequence[str] | None = None) -> Path:
    """Conflict over depth: per-layer conflict rate (top) and mean cosine (bottom), one line
    per label with a ± std band over its runs."""
    profiles = depth_profiles(runs, labels)
    layers = _union_layers(list(profiles.values()))
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.5, 0.32 * len(layers) + 2.5), 6),
                                      sharex=True, layout="constrained")
    for i, (label, p) in enumerate(profiles.items()):
        color, marker = PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]
        xs = [layers.index(layer) for layer in p["layers"]]
        for ax, key in ((top, "rate"), (bottom, "cosine")):
            ax.plot(xs, p[key], color=color, marker=marker, markersize=3.5, linewidth=1.2,
                    label=f"{label} ({_n(p['runs'])})" if key == "rate" else None)
            if p[f"{key}_std"] is not None:
                ax.fill_between(xs, [m - s for m, s in zip(p[key], p[f"{key}_std"])],
                                [m + s for m, s in zip(p[key], p[f"{key}_std"])],
                                color=color, alpha=0.12, linewidth=0)
    threshold = next(iter(profiles.values()))["threshold"]
    top.set_ylabel(f"Steps in conflict (%, cos < {threshold})")
    bottom.set_ylabel("Mean task-gradient cosine")
    bottom.axhline(0, color="black", linewidth=0.8)
    bottom.set_xlabel("Shared layer (input to output)")
    bottom.set_xticks(range(len(layers)))
    bottom.set_xticklabels([layer.removeprefix("encoder.") for layer in layers], rotation=60,
                           ha="right", fontsize=6.5)
    top.set_title(title or "Gradient conflict over depth")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return _first(save_figure(fig, plt, out, formats))


def _legends_below(fig) -> None:
    """Move every axes legend (and unlabelled handles) into one figure legend under the axes,
    so no legend covers data; constrained layout reserves its room inside the figure size."""
    handles, names = [], []
    for ax in fig.axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    if handles:
        if fig.get_layout_engine() is None:
            fig.set_layout_engine("constrained")
        fig.legend(handles, names, loc="outside lower center", frameon=False,
                   ncol=1 if max(map(len, names)) > 40 else min(3, len(names)))


def save_figure(fig, plt, out: str | Path, formats: Sequence[str] | str | None = None
                ) -> list[Path]:
    """Write ``fig`` in every format (``out`` with its suffix replaced; a suffix that is one of
    the formats is the first one written) and close it; returns the paths."""
    fmts = parse_formats(formats)
    path = Path(out)
    if path.suffix.lower().lstrip(".") in FORMATS:
        first = path.suffix.lower().lstrip(".")
        fmts = (first, *[f for f in fmts if f != first])
        path = path.with_suffix("")
    elif path.suffix:
        raise ConfigError(f"invalid --out {str(out)!r}: the suffix must be one of "
                          f"{', '.join('.' + f for f in FORMATS)} (or none)")
    path.parent.mkdir(parents=True, exist_ok=True)
    _legends_below(fig)
    written = []
    for fmt in fmts:
        target = path.with_name(f"{path.name}.{fmt}")
        fig.savefig(target, format=fmt, dpi=DPI, metadata=_metadata(fmt))
        written.append(target)
    plt.close(fig)
    return written


def _metadata(fmt: str) -> dict[str, Any]:
    # no creation date: re-drawing the same data gives byte-identical PDF/SVG files
    return {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(fmt, {})


def _first(paths: list[Path]) -> Path:
    return paths[0]


def save_png(fig, plt, out: str | Path) -> Path:
    """Write ``out`` (a .png, at :data:`DPI`) and its :data:`DEFAULT_FORMATS` siblings with
    legends below the axes; close ``fig``; returns the PNG path (the search report's call)."""
    if Path(out).suffix.lower() != ".png":
        raise ConfigError(f"invalid --out {str(out)!r}: must be a .png file")
    return _first(save_figure(fig, plt, out, DEFAULT_FORMATS))
