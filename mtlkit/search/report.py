"""Search results: ``summary.csv`` (one row per trial), ``summary.md`` (mean ± std over seeds)
and plots (Δm vs trainable fraction per method; conflict incidence p% dense vs sparse).

Seeds are aggregated by grouping on every swept key except ``seed``.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mtlkit.results import write_csv
from mtlkit.search.runner import resolve_trial
from mtlkit.search.spec import SearchSpec

CONFIG_COLUMNS = ("benchmark", "aggregator", "mask", "density", "seed")
# Metrics shown in the aggregated table, in this order, when present.
SUMMARY_METRICS = ("delta_m", "p_all_pct", "p_last_half_pct", "trainable_fraction")
TAIL_COLUMNS = ("delta_m", "delta_m_task_level", "p_all_pct", "p_last_half_pct",
                "p_trainable_all_pct", "p_trainable_last_half_pct", "trainable_fraction",
                "epochs", "epochs_total", "steps", "wall_s", "node_id", "attempts",
                "resumed_from_epoch", "out_dir")


def summary_rows(results: Any, spec: SearchSpec, out: Path) -> list[dict[str, Any]]:
    """One row per trial from Tune's ResultGrid: config, final metrics, status."""
    rows = []
    for result in results:
        metrics = dict(result.metrics or {})
        trial_id = metrics.get("trial_id") or Path(result.path).name
        swept, values = resolve_trial(result.config)
        row: dict[str, Any] = {"trial_id": trial_id,
                               "label": ",".join(f"{k}={v}" for k, v in swept.items())}
        done = metrics.get("finished") == 1
        row["status"] = ("error" if result.error else "done" if done
                         else "stopped_early" if metrics else "not_started")
        row["error"] = _one_line(result.error) if result.error else ""
        for key, value in swept.items():
            row[key] = _cell(value)
        for key in CONFIG_COLUMNS:
            if key not in row:
                row[key] = _cell(values.get(key, _default(key)))
        for key in sorted(k for k in metrics if k.startswith(("test.", "val."))):
            row[key] = metrics[key]
        attempts = Path(out) / "trials" / trial_id / "attempts.jsonl"
        metrics["attempts"] = (len(attempts.read_text().splitlines())
                               if attempts.is_file() else None)
        metrics["out_dir"] = str(attempts.parent)
        metrics["epochs"], metrics["steps"] = metrics.get("epoch"), metrics.get("step")
        for key in TAIL_COLUMNS:
            row[key] = metrics.get(key)
        rows.append(row)
    rows.sort(key=lambda r: str(r["trial_id"]))
    return rows


def _default(key: str) -> Any:
    import attrs

    from mtlkit.config import TrainConfig

    return attrs.fields_dict(TrainConfig)[key].default


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def _one_line(error: Any) -> str:
    text = str(error).strip().splitlines()
    return text[-1][:300] if text else type(error).__name__


def aggregate(rows: list[dict[str, Any]], spec: SearchSpec) -> tuple[list[str], list[dict]]:
    """Group finished trials by every swept key except seed; mean and std of each metric."""
    keys = [k for k in spec.swept_keys if k != "seed"]
    metrics = [m for m in _metric_columns(rows)]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        if row["status"] in ("done", "stopped_early"):
            groups.setdefault(tuple(str(row.get(k)) for k in keys), []).append(row)
    table = []
    for group_rows in groups.values():
        entry: dict[str, Any] = {k: group_rows[0].get(k) for k in keys}
        entry["n"] = len(group_rows)
        for m in metrics:
            vals = [r[m] for r in group_rows if _num(r.get(m))]
            entry[m] = ((statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1
                         else 0.0) if vals else None)
        table.append(entry)
    return keys, table


def _metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    # Task means keep the table narrow; per-task columns only when there are no means.
    cols = [c for c in (rows[0] if rows else {}) if c.startswith("test.")]
    ordered = [c for c in cols if c.startswith("test.mean.")] or cols
    ordered += [m for m in SUMMARY_METRICS if any(_num(r.get(m)) for r in rows)]
    return [c for c in ordered if any(_num(r.get(c)) for r in rows)]


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def markdown_table(keys: list[str], table: list[dict[str, Any]], spec: SearchSpec,
                   rows: list[dict[str, Any]]) -> str:
    metrics = _metric_columns(rows)
    lines = [f"# {spec.name}: mean ± std over seeds", "",
             f"{len(rows)} trials; metric `{spec.metric}` ({spec.mode}); Δm% is metric-level, "
             "lower is better; p% is the conflict incidence over all steps / the last half.",
             ""]
    header = [*keys, "n", *metrics]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for entry in table:
        cells = [_key_cell(entry.get(k)) for k in keys] + [str(entry["n"])]
        for m in metrics:
            v = entry.get(m)
            cells.append("–" if v is None else f"{v[0]:.4g} ± {v[1]:.2g}")
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in rows if r["status"] == "error"]
    if failed:
        lines += ["", f"{len(failed)} trial(s) failed: "
                  + "; ".join(f"{r['trial_id']} ({r['error']})" for r in failed)]
    return "\n".join(lines) + "\n"


def _key_cell(value: Any) -> str:
    # Optuna samples floats such as 0.5488135039273248; the table needs 4 significant digits.
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def plot(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """The two standard figures, when the search varies what they show; needs matplotlib."""
    done = [r for r in rows if r["status"] in ("done", "stopped_early")]
    y_key = "delta_m" if any(_num(r.get("delta_m")) for r in done) else next(
        (c for c in _metric_columns(done) if c.startswith("test.mean.")), None)
    fractions = {round(r["trainable_fraction"], 4) for r in done
                 if _num(r.get("trainable_fraction"))}
    density_plot = bool(y_key) and len(fractions) > 1
    masks = sorted({str(r.get("mask")) for r in done})
    conflict_plot = len(masks) > 1 and any(_num(r.get("p_all_pct")) for r in done)
    if not (density_plot or conflict_plot):
        return []  # and skip the matplotlib import (about a second)
    from mtlkit.errors import MtlkitError
    from mtlkit.plotting import pyplot, save_png

    try:
        plt = pyplot()
    except MtlkitError:  # no plot extra: the CSV and the table are still written
        return []
    written = []
    if density_plot:
        fig, ax = plt.subplots(figsize=(6, 4))
        for method, group in _by(done, "aggregator").items():
            pts = _mean_std(group, "trainable_fraction", y_key)
            if pts:
                xs, ys, es = zip(*pts)
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=method)
        ax.set_xlabel("trainable fraction of the shared encoder")
        ax.set_ylabel("Δm % (lower is better)" if y_key == "delta_m" else y_key)
        ax.set_title(f"{y_key} vs density (mean ± std over seeds)")
        ax.legend()
        written.append(save_png(fig, plt, out / "delta_m_vs_density.png"))
    if conflict_plot:
        methods = sorted(_by(done, "aggregator"))
        fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(methods) + 2), 4))
        width = 0.8 / len(masks)
        for i, mask in enumerate(masks):
            heights, errs = [], []
            for method in methods:
                vals = [r["p_all_pct"] for r in done if r.get("aggregator") == method
                        and str(r.get("mask")) == mask and _num(r.get("p_all_pct"))]
                heights.append(statistics.fmean(vals) if vals else 0.0)
                errs.append(statistics.stdev(vals) if len(vals) > 1 else 0.0)
            xs = [j + (i - (len(masks) - 1) / 2) * width for j in range(len(methods))]
            label = "dense" if mask == "dense" else f"sparse ({mask})"
            ax.bar(xs, heights, width, yerr=errs, capsize=3, label=label)
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
        ax.set_ylabel("conflict incidence p % (all steps)")
        ax.set_title("p % dense vs sparse (mean ± std over seeds)")
        ax.legend()
        written.append(save_png(fig, plt, out / "conflict_dense_vs_sparse.png"))
    return written


def _by(rows: Iterable[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(str(r.get(key)), []).append(r)
    return out


def _mean_std(rows: list[dict[str, Any]], x_key: str, y_key: str
              ) -> list[tuple[float, float, float]]:
    by_x: dict[float, list[float]] = {}
    for r in rows:
        if _num(r.get(x_key)) and _num(r.get(y_key)):
            by_x.setdefault(round(r[x_key], 4), []).append(r[y_key])
    return [(x, statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
            for x, v in sorted(by_x.items())]


def write_reports(results: Any, spec: SearchSpec, out: str | Path) -> dict[str, Any]:
    """summary.csv, summary.md and the plots; returns what was written."""
    out = Path(out)
    rows = summary_rows(results, spec, out)
    write_csv(out / "summary.csv", rows)
    keys, table = aggregate(rows, spec)
    text = markdown_table(keys, table, spec, rows)
    (out / "summary.md").write_text(text, encoding="utf-8")
    return {"rows": rows, "markdown": text, "plots": plot(rows, out)}
