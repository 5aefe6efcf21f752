"""The Markdown report of ``benchmarks/sparse_vs_dense.py``: tables, paired tests, figures.

Conventions (also stated in the report): p% is the sparse-training paper's conflict incidence
(share of task pairs with cos < 0 per observed step), averaged over all steps or the last 50%
of training, on the full shared gradient or the trainable coordinates; task metrics are test
values in %; Δm in CAGrad's metric-level convention (lower is better) and Recon's task-level
one (higher is better) against single-task runs from the same start. The paired test is
Student's paired t-test across seeds (same seed = same data order and head initialisation for
dense and PSN), two-sided; pooled rows pair every (method, seed) of a density with its dense
twin, which treats methods as replicates of the same question (the paper's "with any
aggregator" claim).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

P_KEYS = (("incidence_all", "p% all"), ("incidence_last_half", "p% last 50%"),
          ("incidence_trainable_all", "p% all (trainable)"),
          ("incidence_trainable_last_half", "p% last 50% (trainable)"))
SETTING_NAMES = {"random": "random init", "pretrained": "pre-trained"}


def protocol_wall(out: Path, elapsed: float) -> float:
    """Add this invocation's wall time (when it ran something) to OUT/wall_time.json."""
    path = out / "wall_time.json"
    total = json.loads(path.read_text())["seconds"] if path.is_file() else 0.0
    total += elapsed
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"seconds": total}) + "\n")
    return total


def _fin(values: list[Any], scale: float = 1.0) -> list[float]:
    return [v * scale for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def stat(values: list[Any], scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± std`` over seeds; a single value says ``(n = 1)``, never ``± 0``."""
    vals = _fin(values, scale)
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f} (n = 1)"
    return f"{statistics.fmean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def load(folders: list[Path]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """``{(aggregator, arm): [results, ...]}`` in run order; missing runs are skipped (the
    seeds column shows how many there are)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for f in folders:
        if (f / "results.json").is_file():
            r = json.loads((f / "results.json").read_text())
            r["_folder"] = str(f)
            groups.setdefault((f.parent.parent.name, f.parent.name), []).append(r)
    return groups


def _metrics(groups) -> list[tuple[str, str]]:
    first = next(iter(groups.values()))[0]
    return [(t, m) for t, ms in first["tasks"].items() for m in ms if m != "loss"]


def _arm_cell(arm: str, rs: list[dict[str, Any]]) -> str:
    return arm if arm == "dense" else f"{arm} (K={rs[0]['mask_info'].get('k')})"


def table(groups) -> list[str]:
    """Markdown rows, one per (aggregator, arm), seeds aggregated."""
    metrics = _metrics(groups)
    head = ["method", "mask", "trainable", *[label for _, label in P_KEYS],
            *[f"{t} {m}" for t, m in metrics], "Δm% metric-level ↓", "Δm% task-level ↑",
            "seeds", "ms/step"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (agg, arm), rs in groups.items():
        c = [r.get("conflict") or {} for r in rs]
        cells = [agg, _arm_cell(arm, rs), stat([r["trainable_fraction"] for r in rs], 100, 1),
                 *[stat([x.get(k) for x in c], 100) for k, _ in P_KEYS],
                 *[stat([r["tasks"][t][m] for r in rs], 100 if m == "accuracy" else 1)
                   for t, m in metrics],
                 stat([r.get("delta_m") for r in rs]),
                 stat([r.get("delta_m_task_level") for r in rs]),
                 str(len(rs)), stat([step_ms(r) for r in rs], 1, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def step_ms(r: dict[str, Any]) -> float | None:
    """Wall time per optimizer step in ms (the run's wall_s includes its evaluations, which
    cost the same for every mask)."""
    return 1000 * r["wall_s"] / r["steps"] if r.get("wall_s") and r.get("steps") else None


def paired(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Mean and std of the differences b - a and the two-sided paired t-test p-value
    (scipy.stats.ttest_rel); p is nan when the differences have no spread or n < 2."""
    d = [y - x for x, y in zip(a, b)]
    if len(d) < 2:
        return (d[0] if d else math.nan), math.nan, math.nan
    sd = statistics.stdev(d)
    if sd == 0:
        return statistics.fmean(d), 0.0, math.nan
    from scipy import stats

    return statistics.fmean(d), sd, float(stats.ttest_rel(b, a).pvalue)


def _pairs(groups, agg: str, arm: str, key) -> tuple[list[float], list[float]]:
    dense = {r["seed"]: key(r) for r in groups.get((agg, "dense"), [])}
    sparse = {r["seed"]: key(r) for r in groups.get((agg, arm), [])}
    seeds = [s for s in dense if s in sparse and dense[s] is not None
             and sparse[s] is not None]
    return [dense[s] for s in seeds], [sparse[s] for s in seeds]


def _cell(a: list[float], b: list[float], scale: float = 1.0) -> list[str]:
    mean, sd, p = paired([x * scale for x in a], [y * scale for y in b])
    if not a:
        return ["–", "–"]
    spread = "" if math.isnan(sd) else f" ± {sd:.2f}"
    return [f"{mean:+.2f}{spread}", "–" if math.isnan(p) else f"{p:.3f}"]


TESTED = (("incidence_all", "Δp% all"), ("incidence_last_half", "Δp% last 50%"),
          ("incidence_trainable_last_half", "Δp% last 50% (trainable)"))


def paired_table(setting: str, groups) -> list[str]:
    """PSN - dense per method and density, and pooled over methods; p from paired t-tests."""
    head = ["setting", "method", "PSN arm", "pairs"]
    for _, label in TESTED:
        head += [label, "p"]
    head += ["ΔΔm% metric-level", "p"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    aggs = list(dict.fromkeys(a for a, _ in groups))
    arms = [arm for arm in dict.fromkeys(b for _, b in groups) if arm != "dense"]
    for arm in arms:
        for agg in [*aggs, None]:
            cells = [SETTING_NAMES.get(setting, setting), agg or "**all methods (pooled)**",
                     arm]
            n = 0
            for key, _ in TESTED:
                def get(r, key=key):
                    return (r.get("conflict") or {}).get(key)
                a, b = _pool(groups, aggs if agg is None else [agg], arm, get)
                n = len(a)
                cells += _cell(a, b, 100)
            a, b = _pool(groups, aggs if agg is None else [agg], arm,
                         lambda r: r.get("delta_m"))
            cells += _cell(a, b)
            cells.insert(3, str(n))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _pool(groups, aggs: list[str], arm: str, key) -> tuple[list[float], list[float]]:
    a: list[float] = []
    b: list[float] = []
    for agg in aggs:
        x, y = _pairs(groups, agg, arm, key)
        a += x
        b += y
    return a, b


def speed_rows(setting: str, groups) -> list[str]:
    """Per PSN arm: time per step relative to dense, paired by (method, seed)."""
    rows = []
    aggs = list(dict.fromkeys(a for a, _ in groups))
    for arm in [b for b in dict.fromkeys(b for _, b in groups) if b != "dense"]:
        a, b = _pool(groups, aggs, arm, step_ms)
        ratios = [y / x for x, y in zip(a, b) if x]
        if not ratios:
            continue
        geo = math.exp(statistics.fmean(math.log(r) for r in ratios))
        _, _, p = paired([math.log(x) for x in a], [math.log(y) for y in b])
        rows.append(f"| {SETTING_NAMES.get(setting, setting)} | {arm} | {len(ratios)} | "
                    f"{statistics.fmean(a):.0f} | {statistics.fmean(b):.0f} | {geo:.3f} | "
                    f"{min(ratios):.2f} – {max(ratios):.2f} | "
                    f"{'–' if math.isnan(p) else f'{p:.3f}'} |")
    return rows


def depth_rows(setting: str, groups, agg: str) -> list[str]:
    """Per arm: mean per-layer conflict rate (%) over the first, middle and last third of the
    shared layers (mean over seeds), from probe layer_conflict."""
    rows = []
    for arm in dict.fromkeys(b for a, b in groups if a == agg):
        thirds: list[list[float]] = [[], [], []]
        for r in groups[(agg, arm)]:
            p = (r.get("probes") or {}).get("layer_conflict")
            if not p:
                continue
            pairs = p["observed_steps"] * p["pairs_per_step"]
            layers = p["layers"]
            for i, layer in enumerate(layers):
                thirds[min(2, 3 * i // len(layers))].append(
                    100 * p["s_conflict_counts"][layer] / pairs)
        if all(thirds):
            rows.append(f"| {SETTING_NAMES.get(setting, setting)} | {agg} | {arm} | "
                        + " | ".join(f"{statistics.fmean(t):.1f}" for t in thirds) + " |")
    return rows


def figures(setting: str, bench: str, groups, plots: Path, formats: str,
            depth_agg: str | None) -> list[tuple[str, Path]]:
    from mtlkit import plotting

    out = []
    name = SETTING_NAMES.get(setting, setting)
    for agg in dict.fromkeys(a for a, _ in groups):
        runs, labels = [], []
        for (a, arm), rs in groups.items():
            if a == agg:
                runs += [r["_folder"] for r in rs]
                labels += [arm] * len(rs)
        path = plotting.plot_conflict(
            runs, plots / f"sparse_vs_dense_{setting}_{bench}_{agg}.png", labels=labels,
            title=f"{bench}, {name}, {agg}: conflict incidence, dense vs PSN",
            formats=formats)
        out.append((f"{name}, {agg}: conflict over training", path))
    if depth_agg and any((depth_agg, arm) in groups for _, arm in groups):
        runs, labels = [], []
        for (a, arm), rs in groups.items():
            if a == depth_agg and all((r.get("probes") or {}).get("layer_conflict")
                                      for r in rs):
                runs += [r["_folder"] for r in rs]
                labels += [arm] * len(rs)
        if runs:
            path = plotting.plot_conflict_depth(
                runs, plots / f"conflict_depth_{setting}_{bench}_{depth_agg}.png",
                labels=labels, title=f"{bench}, {name}, {depth_agg}: conflict over depth",
                formats=formats)
            out.append((f"{name}, {depth_agg}: conflict over depth", path))
    return out


def _pretrain_line(out: Path) -> str:
    info_path = out / "pretrained_encoder.pt.json"
    if not info_path.is_file():
        return ""
    info = json.loads(info_path.read_text())
    return (f"Pre-trained encoder: `{info['backbone']}` {info['backbone_params']} "
            f"({info['parameters']} parameters), trained on {info['source']} "
            f"({info['n_train']} images, {info['epochs']} epochs, batch {info['batch_size']}, "
            f"Adam lr {info['lr']}, seed {info['seed']}); its {info['source']} test accuracy "
            f"is {100 * info['test_accuracy']:.2f}%, pre-training took "
            f"{info['wall_s'] / 60:.1f} min.")


def write_doc(a, path: Path, plots: Path, out: Path, chosen, grid, log: list[str],
              elapsed: float, wall: float) -> None:
    import torch

    import mtlkit

    # --report-only is how, not what: the printed command reproduces the runs too
    argv = " ".join(shlex.quote(x) for x in sys.argv[1:] if x != "--report-only")
    fmt = a.format
    all_walls = [r.get("wall_s") or 0.0 for (s, bench), folders in grid.items()
                 for rs in load(folders).values() for r in rs]
    stl_walls = [json.loads(p.read_text()).get("wall_s") or 0.0
                 for _, folder, _ in chosen for bench in a.benchmarks
                 for p in (folder / bench / "stl").glob("seed*/stl/*/results.json")]
    doc = [
        "# Dense vs sparse (PSN) training: conflict incidence and Δm",
        "",
        "Generated by `benchmarks/sparse_vs_dense.py`; re-run the command below to reproduce "
        "it (finished runs are reused).",
        "",
        *([f"> {a.note}", ""] if a.note else []),
        "```",
        f"python benchmarks/sparse_vs_dense.py {argv}",
        "```",
        "",
        f"mtlkit {mtlkit.__version__}, torch {torch.__version__}, CPU, `--threads 1` per run, "
        f"{a.jobs} run(s) at once; {len(a.seeds)} seeds ({', '.join(map(str, a.seeds))}); "
        f"epochs {a.epochs or 'benchmark default'}"
        f"{f', max {a.max_steps} steps' if a.max_steps else ''}; conflict observed every "
        f"{a.probe_every} step(s).",
        "",
        f"**Wall time of the protocol: {wall / 60:.1f} min** (the invocations of this command "
        f"that ran something; this one took {elapsed / 60:.1f} min); the runs' own "
        f"`wall_s` sum to {sum(all_walls) / 60:.1f} min (multi-task) + "
        f"{sum(stl_walls) / 60:.1f} min (single-task), on a shared 2-core machine, so "
        "absolute times are not speed measurements; the PSN/dense ratios below pair runs "
        "that ran side by side.",
        "",
        _pretrain_line(out),
        "",
        "Columns: *p%* is the sparse-training paper's conflict incidence (share of task pairs "
        "with cos < 0 per observed step), averaged over all steps or the last 50% of "
        "training, on the full shared gradient and on the trainable coordinates only (equal "
        "for dense). Task metrics are test-set values in % (accuracy) at the end of training. "
        "Δm% is computed against single-task baselines (`mtlkit train --stl`, same protocol "
        "and same start, mean over the same seeds): metric-level (CAGrad/Nash-MTL tables, "
        "lower is better) and Recon's task-level (higher is better); see docs/delta-m.md. "
        "Values are mean ± std over seeds; a single run says n = 1.",
        "",
    ]
    for bench in a.benchmarks:
        per = {s: load(grid[(s, bench)]) for s, _, _ in chosen}
        per = {s: g for s, g in per.items() if g}
        if not per:
            continue
        doc += [f"## {bench}", ""]
        if len(per) > 1:
            doc += [*_side_by_side(per), ""]
        doc += ["### Paired test across seeds: PSN minus dense", "",
                "Differences in percentage points (p%) and Δm points, mean ± std over the "
                "pairs; p from the two-sided paired t-test (– when there is no spread). With "
                "3 seeds a single method's test has little power; the pooled rows pair all "
                "methods.", ""]
        for s, g in per.items():
            doc += paired_table(s, g)[0 if s == next(iter(per)) else 2:]
        doc += ["", "### Time per step: PSN vs dense", "",
                "Wall time per optimizer step (evaluation included, equal for all masks), "
                "PSN over dense paired by (method, seed); p from a paired t-test on log "
                "times.", "",
                "| setting | PSN arm | pairs | dense ms/step | PSN ms/step | ratio (geometric "
                "mean) | ratio range | p |", "|---|---|---|---|---|---|---|---|"]
        for s, g in per.items():
            doc += speed_rows(s, g)
        depth_agg = a.aggregators[0]
        doc += ["", "### Conflict over depth", "",
                f"Probe `layer_conflict`, method {depth_agg}: share of observed steps in "
                "which a layer's two task gradients have cos < 0 (%), averaged over the "
                "first, middle and last third of the shared layers (model order) and over "
                "seeds.", "", "| setting | method | mask | first third | middle third | "
                "last third |", "|---|---|---|---|---|---|"]
        for s, g in per.items():
            doc += depth_rows(s, g, depth_agg)
        doc += [""]
        for s, g in per.items():
            name = SETTING_NAMES.get(s, s)
            base = next(f for s2, f, _ in chosen if s2 == s) / bench / "stl_baselines.json"
            baselines = json.loads(base.read_text())
            doc += [f"### {name}: all columns", "",
                    "Single-task baselines (mean over seeds): " + ", ".join(
                        f"{t} {m} {v * (100 if m == 'accuracy' else 1):.2f}"
                        for t, ms in baselines.items() for m, v in ms.items()), "",
                    *table(g), ""]
        doc += ["### Figures", "",
                f"Each figure is also written as {', '.join(fmt.split(','))} next to the PNG "
                "(same name).", ""]
        for s, g in per.items():
            for caption, png in figures(s, bench, g, plots, fmt, depth_agg if
                                        "layer_conflict" in (a.probes or []) else None):
                doc += [f"![{caption}]({os.path.relpath(png, path.parent)})", ""]
    if a.discussion:
        doc += [Path(a.discussion).read_text().rstrip(), ""]
    doc += ["## The commands behind the tables", "",
            "The script runs these (skipping finished ones); the STL baseline file of a "
            "setting and benchmark is the per-metric mean of its seeds' "
            "`stl_baselines.json`.", "", "```", *log, "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(doc))
    print(f"wrote {path}")


def _side_by_side(per: dict[str, Any]) -> list[str]:
    settings = list(per)
    head = ["method", "mask"]
    for s in settings:
        n = SETTING_NAMES.get(s, s)
        head += [f"{n}: p% all", f"{n}: p% last 50%", f"{n}: Δm% ↓"]
    lines = ["### Random init vs pre-trained, side by side", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = list(dict.fromkeys(k for g in per.values() for k in g))
    for agg, arm in keys:
        cells = [agg, arm]
        for s in settings:
            rs = per[s].get((agg, arm), [])
            c = [r.get("conflict") or {} for r in rs]
            cells += [stat([x.get("incidence_all") for x in c], 100),
                      stat([x.get("incidence_last_half") for x in c], 100),
                      stat([r.get("delta_m") for r in rs])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
